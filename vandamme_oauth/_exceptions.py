"""The exception tree of vandamme-oauth.

Every error the library raises on purpose is an [`OAuthError`][vandamme_oauth.OAuthError], so one
``except`` catches them all. Fields follow RFC 6749 section 5.2 (``error``, ``error_description``,
``error_uri``) whenever the server supplied them. No message, ``repr`` or attribute ever holds a
token, authorization code, state or PKCE verifier (``TokenError.salvage`` holds a login, whose
``repr`` hides its secrets, so that a rotated refresh token in a broken answer is kept).

    OAuthError
    ├── ValidationError              bad configuration or input (also a ValueError)
    │   └── InvalidJWTError          a token that is not a readable JWT
    ├── NotAuthenticatedError        nothing stored: log in first
    ├── StorageError                 the auth store cannot be read or written
    ├── DiscoveryError               RFC 8414 / OIDC metadata unusable
    ├── HttpError                    an HTTP exchange failed (status_code, reason, url, body)
    │   └── TokenEndpointError       the token endpoint refused (also a TokenError)
    ├── NetworkError                 the server could not be reached (transient)
    ├── TokenError                   a token response is unusable
    │   ├── TokenEndpointError
    │   ├── TokenLifetimeError       tokens that expire before they can be served
    │   └── ReauthenticationRequired the refresh token is dead: log in again
    └── OAuthFlowError               the browser login did not complete
        ├── AuthorizationError       the provider answered error=...
        ├── StateMismatchError       a callback that matches no pending login
        ├── IssuerMismatchError      RFC 9207 iss check failed (mix-up defence)
        ├── CallbackServerError      the loopback port could not be opened
        └── CallbackTimeoutError     no callback in time (also a TimeoutError)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthorizationError",
    "CallbackServerError",
    "CallbackTimeoutError",
    "DiscoveryError",
    "HttpError",
    "InvalidJWTError",
    "IssuerMismatchError",
    "NetworkError",
    "NotAuthenticatedError",
    "OAuthError",
    "OAuthFlowError",
    "ReauthenticationRequired",
    "StateMismatchError",
    "StorageError",
    "TokenEndpointError",
    "TokenError",
    "TokenLifetimeError",
    "ValidationError",
]


class OAuthError(Exception):
    """Root of every error raised by vandamme-oauth.

    Args:
        message: What went wrong and what to do next. Defaults to ``"{error}: {description}"``.
        error: The RFC 6749 section 5.2 error code, when a server sent one.
        error_description: The server's human-readable description, if any.
        error_uri: The server's link to more information, if any.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        error: str | None = None,
        error_description: str | None = None,
        error_uri: str | None = None,
    ) -> None:
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri
        if message is None:
            message = ": ".join(p for p in (error, error_description) if p) or type(self).__name__
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, error={self.error!r})"


class ValidationError(OAuthError, ValueError):
    """Configuration or input that cannot be used (bad URL, bad scope, malformed data)."""


class InvalidJWTError(ValidationError):
    """A token that should be a JWT cannot be decoded (its claims are unreadable)."""


class NotAuthenticatedError(OAuthError):
    """The storage holds no login: run ``vandamme-oauth login`` or ``OAuthFlow.authenticate()``."""


class StorageError(OAuthError):
    """The auth store cannot be read or written; the message names the path or key."""


class DiscoveryError(OAuthError):
    """Authorization-server metadata (RFC 8414 / OpenID discovery) is missing or unusable."""


class InsufficientScopeError(OAuthError):
    """A resource answered 403 ``insufficient_scope``: the login lacks scopes it needs
    (RFC 6750 section 3.1) and no step-up login was run.

    Attributes:
        resource: The resource that asked.
        scopes: The scopes a new login should ask for (those held and those required).
    """

    def __init__(self, message: str, *, resource: str, scopes: tuple[str, ...]) -> None:
        super().__init__(message, error="insufficient_scope")
        self.resource = resource
        self.scopes = scopes


class RegistrationError(DiscoveryError):
    """Dynamic client registration (RFC 7591) is not offered, or the server refused it."""


class HttpError(OAuthError):
    """An HTTP exchange with the provider failed.

    Attributes:
        status_code: The HTTP status, or None when no response arrived.
        reason: The HTTP reason phrase.
        url: The URL requested (never carries secrets: we never put tokens in URLs).
        body: The start of the response body with token-like values redacted.
        retry_after: Seconds from a ``Retry-After`` header, if the server sent one.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        reason: str = "",
        url: str = "",
        body: str = "",
        retry_after: float | None = None,
        error: str | None = None,
        error_description: str | None = None,
        error_uri: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.url = url
        self.body = body
        self.retry_after = retry_after
        super().__init__(
            message, error=error, error_description=error_description, error_uri=error_uri
        )

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed (429, 5xx or ``temporarily_unavailable``)."""
        if self.error in {"temporarily_unavailable", "server_error", "slow_down"}:
            return True
        return self.status_code is not None and (self.status_code == 429 or self.status_code >= 500)


class NetworkError(OAuthError):
    """The provider could not be reached (DNS, connect, TLS, timeout). Always transient.

    Attributes:
        sent: False when the request certainly never reached the server (safe to repeat).
    """

    transient = True

    def __init__(self, message: str, *, sent: bool) -> None:
        self.sent = sent
        super().__init__(message)


class TokenError(OAuthError):
    """A token response cannot be used.

    Attributes:
        salvage: Set only when a refresh answer was unusable but carried a new (rotated)
            refresh token: the previous login with that refresh token in it, which the
            [`TokenManager`][vandamme_oauth.TokenManager] stores so the rotation is not lost. An
            ``AuthData``, whose ``repr`` hides every secret; never part of the message.
    """

    salvage: Any = None


class TokenEndpointError(TokenError, HttpError):
    """The token endpoint answered with an error status."""


class TokenLifetimeError(TokenError):
    """The provider issued a token that expired before it could be served (it lived less than
    the round trip); refreshes are paced (``min_refresh_interval``) rather than looped."""


class ReauthenticationRequired(TokenError):
    """The refresh token was rejected for good (e.g. ``invalid_grant``): the user must log in again.

    Attributes:
        status_code: The HTTP status of the rejection, if it came from the server.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        error_uri: str | None = None,
    ) -> None:
        self.status_code = status_code
        super().__init__(
            message, error=error, error_description=error_description, error_uri=error_uri
        )


class OAuthFlowError(OAuthError):
    """The interactive login did not complete."""


class AuthorizationError(OAuthFlowError):
    """The authorization server answered the login with an error (e.g. ``access_denied``)."""


class StateMismatchError(OAuthFlowError):
    """A callback whose ``state`` matches no pending login (forged, stale or replayed)."""


class IssuerMismatchError(OAuthFlowError):
    """The callback's ``iss`` is missing or names another server (RFC 9207 mix-up defence)."""


class CallbackServerError(OAuthFlowError):
    """The loopback callback server could not listen on any allowed port."""


class CallbackTimeoutError(OAuthFlowError, TimeoutError):
    """No usable callback arrived before the timeout."""
