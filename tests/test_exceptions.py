"""The exception tree: shape, messages and the RFC 6749 5.2 fields."""

from __future__ import annotations

import pytest

import vandamme_oauth as vo


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        (vo.ValidationError, (vo.OAuthError, ValueError)),
        (vo.InvalidJWTError, (vo.ValidationError,)),
        (vo.TokenEndpointError, (vo.TokenError, vo.HttpError)),
        (vo.ReauthenticationRequired, (vo.TokenError,)),
        (vo.CallbackTimeoutError, (vo.OAuthFlowError, TimeoutError)),
        (vo.StateMismatchError, (vo.OAuthFlowError,)),
        (vo.IssuerMismatchError, (vo.OAuthFlowError,)),
        (vo.AuthorizationError, (vo.OAuthFlowError,)),
        (vo.NotAuthenticatedError, (vo.OAuthError,)),
        (vo.StorageError, (vo.OAuthError,)),
        (vo.DiscoveryError, (vo.OAuthError,)),
        (vo.NetworkError, (vo.OAuthError,)),
    ],
)
def test_tree(child: type[Exception], parents: tuple[type[Exception], ...]) -> None:
    """Each error sits where the module docstring draws it."""
    for parent in parents:
        assert issubclass(child, parent)


def test_default_message_is_error_and_description() -> None:
    """Without a message, str() is "{error}: {description}"."""
    error = vo.OAuthError(error="invalid_grant", error_description="expired", error_uri="u")
    assert str(error) == "invalid_grant: expired"
    assert (error.error, error.error_description, error.error_uri) == (
        "invalid_grant",
        "expired",
        "u",
    )
    assert "invalid_grant" in repr(error)


def test_http_error_fields_and_transience() -> None:
    """HttpError carries status, reason, url and body; 429/5xx are transient."""
    error = vo.TokenEndpointError(
        "x", status_code=503, reason="Busy", url="https://t", body="b", retry_after=2.0
    )
    assert (error.status_code, error.reason, error.url, error.body, error.retry_after) == (
        503,
        "Busy",
        "https://t",
        "b",
        2.0,
    )
    assert error.transient
    assert not vo.HttpError("x", status_code=400).transient
    assert vo.HttpError("x", status_code=400, error="temporarily_unavailable").transient
