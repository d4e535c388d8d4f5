"""The OAuth protocol core, sans I/O: pure functions over plain values.

- Authorization request (RFC 6749 4.1.1, RFC 7636 4.3): :func:`build_authorization_url`.
- Authorization response (RFC 6749 4.1.2, RFC 9207 2.4): :func:`parse_callback`, which
  checks ``state`` first (constant time), then ``error``, then ``iss``, then ``code``.
- Token requests (RFC 6749 4.1.3 and 6, RFC 7009 2.1): :func:`code_exchange_request`,
  :func:`refresh_request`, :func:`revoke_request`.
- Token responses (RFC 6749 5.1 / 5.2): :func:`parse_token_response` and
  :func:`token_error`, which classifies a refusal as permanent or transient.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from ._exceptions import (
    AuthorizationError,
    InvalidJWTError,
    IssuerMismatchError,
    ReauthenticationRequired,
    StateMismatchError,
    TokenEndpointError,
    TokenError,
)
from ._jwt_claims import claim_at, decode_claims, looks_like_jwt
from ._redact import redact_body
from .storage._base import AuthData

if TYPE_CHECKING:
    from ._pkce import PkcePair
    from ._provider import ProviderConfig

__all__ = [
    "PERMANENT_REFRESH_ERRORS",
    "TokenRequest",
    "build_authorization_url",
    "code_exchange_request",
    "error_code",
    "parse_callback",
    "parse_pasted",
    "parse_token_response",
    "refresh_request",
    "revoke_request",
    "token_error",
]

PERMANENT_REFRESH_ERRORS = frozenset(
    {
        "invalid_grant",
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
    }
)

Grant = Literal["authorization_code", "refresh_token", "device_code"]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A POST to build: URL, body format and ordered fields (values may be secrets)."""

    url: str
    body_format: Literal["form", "json"]
    fields: tuple[tuple[str, str], ...] = field(repr=False)

    def content(self) -> tuple[bytes, str]:
        """The encoded body and its Content-Type."""
        if self.body_format == "json":
            return json.dumps(dict(self.fields)).encode(), "application/json"
        body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.fields)
        return body.encode("ascii"), "application/x-www-form-urlencoded"


def _query(pairs: list[tuple[str, str]]) -> str:
    # Percent-encode everything but RFC 3986 unreserved characters (spaces become %20), as
    # the Codex CLI does.
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def build_authorization_url(
    provider: ProviderConfig, *, redirect_uri: str, state: str, pkce: PkcePair
) -> str:
    """The URL to open in the browser, parameters in the provider's order."""
    pairs = [
        ("response_type", "code"),
        ("client_id", provider.client_id),
        ("redirect_uri", redirect_uri),
        ("scope", " ".join(provider.scopes)),
        ("code_challenge", pkce.challenge),
        ("code_challenge_method", pkce.method),
        *provider.authorize_params,
        ("state", state),
    ]
    if provider.response_mode is not None:
        pairs.append(("response_mode", provider.response_mode))
    pairs.extend(provider.authorize_params_after_state)
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{separator}{_query(pairs)}"


def parse_callback(
    params: Mapping[str, str], *, expected_state: str, issuer: str, require_iss: bool
) -> str:
    """Judge an authorization response and return its ``code``.

    Order matters: ``state`` first, so an error page of a forged request is never shown as
    ours; then ``error``; then ``iss`` (RFC 9207); then ``code``.

    Raises:
        StateMismatchError: ``state`` is missing or differs (compared in constant time).
        AuthorizationError: the server answered ``error=...``, or sent no ``code``.
        IssuerMismatchError: ``iss`` names another server, or is missing but required.
    """
    state = params.get("state", "")
    if not state or not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise StateMismatchError(
            "the callback's state does not match this login (a stale tab or a forged request)"
        )
    if "error" in params:
        raise AuthorizationError(
            f"the provider refused the login: {params['error']}"
            + (f": {params['error_description']}" if params.get("error_description") else ""),
            error=params["error"],
            error_description=params.get("error_description"),
            error_uri=params.get("error_uri"),
        )
    iss = params.get("iss")
    if iss is None and require_iss:
        raise IssuerMismatchError(
            f"the callback has no 'iss' but {issuer} promises one (RFC 9207); refusing the code"
        )
    if iss is not None and iss != issuer:
        raise IssuerMismatchError(
            f"the callback comes from issuer {iss!r}, not {issuer!r} (possible mix-up attack)"
        )
    code = params.get("code")
    if not code:
        raise AuthorizationError("the callback carries neither a code nor an error")
    return code


def parse_pasted(text: str) -> tuple[dict[str, str], bool]:
    """Read what a user pasted: the final redirect URL, its query, or the bare code.

    Returns the callback parameters and whether it was a bare code (which carries no state or
    ``iss`` to check: it came from the user's own terminal, not from a browser request).

    Raises:
        AuthorizationError: nothing usable was pasted.
    """
    text = text.strip().strip("'\"")
    if not text:
        raise AuthorizationError("nothing was pasted")
    if "://" in text or text.startswith("?") or "=" in text:
        query = urlsplit(text).query if "://" in text else text.lstrip("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not params:
            raise AuthorizationError(
                "the pasted address has no query string: copy the full address of the page "
                "your browser ended on (it contains code=... and state=...)"
            )
        return params, False
    if any(c.isspace() for c in text) or len(text) > 4096:
        raise AuthorizationError("the pasted text is neither a redirect address nor a code")
    return {"code": text}, True


def code_exchange_request(
    provider: ProviderConfig, *, code: str, redirect_uri: str, verifier: str
) -> TokenRequest:
    """The authorization-code exchange (form body, RFC 6749 4.1.3 + RFC 7636 4.5)."""
    return TokenRequest(
        provider.token_endpoint,
        "form",
        (
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", provider.client_id),
            ("code_verifier", verifier),
        ),
    )


def refresh_request(provider: ProviderConfig, refresh_token: str) -> TokenRequest:
    """The refresh request (RFC 6749 section 6), in the provider's body format, no scope."""
    if provider.refresh_body == "json":
        fields = (
            ("client_id", provider.client_id),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        )
    else:
        fields = (
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", provider.client_id),
        )
    return TokenRequest(provider.token_endpoint, provider.refresh_body, fields)


def revoke_request(provider: ProviderConfig, token: str, hint: str) -> TokenRequest | None:
    """The RFC 7009 revocation request, or None when the provider has no endpoint."""
    if provider.revocation_endpoint is None:
        return None
    fields = (("token", token), ("token_type_hint", hint), ("client_id", provider.client_id))
    return TokenRequest(provider.revocation_endpoint, provider.revoke_body, fields)


def error_code(body: object) -> str | None:
    """The error code of an error body: ``error.code``, a string ``error``, or ``code``."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        return code if isinstance(code, str) else None
    if isinstance(error, str):
        return error
    code = body.get("code")
    return code if isinstance(code, str) else None


def _error_description(body: object) -> str | None:
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    text = error.get("message") if isinstance(error, Mapping) else body.get("error_description")
    return redact_body(text, limit=200) if isinstance(text, str) else None


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def token_error(
    status: int,
    body: bytes,
    *,
    grant: Grant,
    url: str = "",
    retry_after: float | None = None,
) -> TokenError:
    """Classify a non-200 token-endpoint answer.

    A refresh refused with HTTP 401, ``invalid_grant`` or a ChatGPT ``refresh_token_*`` code
    is permanent: :class:`ReauthenticationRequired`. Anything else is a
    :class:`TokenEndpointError` whose ``transient`` says whether to try again later.
    """
    parsed = _json_or_none(body)
    code = error_code(parsed)
    description = _error_description(parsed)
    if grant == "refresh_token" and (status == 401 or code in PERMANENT_REFRESH_ERRORS):
        return ReauthenticationRequired(
            f"the provider rejected the refresh token ({code or f'HTTP {status}'}); log in again",
            status_code=status,
            error=code,
            error_description=description,
        )
    if parsed is None:
        detail = f"a non-JSON answer: {redact_body(body.decode('utf-8', 'replace'), limit=120)!r}"
    else:
        detail = f"{code or 'no error code'}" + (f": {description}" if description else "")
    return TokenEndpointError(
        f"the token endpoint answered HTTP {status} to the {grant} request with {detail}",
        status_code=status,
        url=url,
        body=redact_body(body.decode("utf-8", "replace")),
        retry_after=retry_after,
        error=code,
        error_description=description,
    )


def _identity(
    provider: ProviderConfig, id_token: str | None, access_token: str
) -> tuple[str | None, str | None]:
    """Account id and email from the ID token's claims, then the access token's."""
    sources: list[dict[str, Any]] = []
    if id_token is not None:
        try:
            sources.append(decode_claims(id_token))
        except InvalidJWTError as exc:
            raise TokenError(
                f"the token endpoint returned an unreadable id_token ({exc.message})"
            ) from None
    if looks_like_jwt(access_token):
        # Access tokens may be opaque or not JSON: then there is nothing to learn from them.
        with contextlib.suppress(InvalidJWTError):
            sources.append(decode_claims(access_token))
    account_id = email = None
    for claims in sources:
        if account_id is None:
            value = claim_at(claims, provider.account_id_claim)
            account_id = value if isinstance(value, str) and value else None
        for path in provider.email_claims:
            value = claim_at(claims, path)
            if email is None and isinstance(value, str) and value:
                email = value
    return account_id, email


def _expires_at(payload: Mapping[str, Any], access_token: str, now: float) -> float | None:
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        if expires_in <= 0:
            raise TokenError("the token response has a non-positive expires_in")
        return now + float(expires_in)
    if looks_like_jwt(access_token):
        try:
            exp = decode_claims(access_token).get("exp")
        except InvalidJWTError:
            return None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return float(exp)
    return None


def parse_token_response(
    status: int,
    body: bytes,
    *,
    provider: ProviderConfig,
    now: float,
    grant: Grant,
    previous: AuthData | None = None,
    url: str = "",
    retry_after: float | None = None,
) -> AuthData:
    """Turn a token-endpoint answer into :class:`AuthData`.

    For a refresh, pass the freshly read ``previous`` login: every response field is optional
    and missing ones are kept from it (above all the refresh token, RFC 6749 section 6).

    Raises:
        ReauthenticationRequired: a refresh refused for good.
        TokenEndpointError: any other error status.
        TokenError: a 200 answer that is not a JSON object with a usable access token.
    """
    if status != 200:
        raise token_error(status, body, grant=grant, url=url, retry_after=retry_after)
    payload = _json_or_none(body)
    if not isinstance(payload, Mapping):
        raise TokenError(
            f"the token endpoint's {grant} answer is not a JSON object: "
            f"{redact_body(body.decode('utf-8', 'replace'), limit=80)!r}"
        )
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError(f"the token endpoint's {grant} answer has no access_token")
    token_type = payload.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() not in {"bearer", "dpop"}:
        raise TokenError(f"unsupported token_type {token_type!r} in the {grant} answer")

    def optional(key: str) -> str | None:
        value = payload.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise TokenError(f"the {grant} answer's {key} is not a string")
        return value

    refresh_token = optional("refresh_token")
    id_token = optional("id_token")
    scope = optional("scope")
    if previous is not None:
        refresh_token = refresh_token or previous.refresh_token
        id_token = id_token or previous.id_token
        scope = scope or previous.scope
    account_id, email = _identity(provider, id_token, access_token)
    if previous is not None:
        account_id = account_id or previous.account_id
        email = email or previous.email
    return AuthData(
        access_token=access_token,
        refresh_token=refresh_token,
        id_token=id_token,
        account_id=account_id,
        email=email,
        expires_at=_expires_at(payload, access_token, now),
        last_refresh=now,
        token_type="Bearer" if token_type.lower() == "bearer" else token_type,
        scope=scope,
    )
