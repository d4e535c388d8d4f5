"""WebLogin: sign a web app's users in with OAuth, framework-agnostic (aiohttp and Starlette
adapters mount it).

``begin(user_key)`` makes a state and a PKCE pair, and returns the authorization URL plus a
cookie value binding them to this browser: state, verifier and the app's user key, signed
and timestamped by itsdangerous (``URLSafeTimedSerializer``, HMAC-SHA256, a salt of its own)
rather than by a format of our own. The cookie is HttpOnly, SameSite=Lax (sent on the provider's
top-level redirect back), Secure on https, and lives ``max_age`` seconds. ``complete()``
checks the signature and age, then judges the callback like the CLI's loopback login
(state in constant time, ``error``, ``iss``, ``code``), exchanges the code once, and stores
the tokens under the user's key. A state is accepted once per process; the provider's code
is single-use anyway. The verifier is signed, not encrypted: it only ever goes to the
browser that started the login.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from .. import _telemetry as telemetry
from .._exceptions import AuthorizationError, StateMismatchError, ValidationError
from .._pkce import new_pkce, new_state
from .._protocol import build_authorization_url, parse_callback
from .._token_client import TokenClient
from .._validation import require_endpoint_url

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx
    import itsdangerous

    from .._provider import ProviderConfig
    from ..storage._base import AuthData, AuthStorage

__all__ = ["WebLogin"]

_SALT = "vandamme-oauth web login"


def _serializer(key: bytes, clock: Callable[[], float]) -> itsdangerous.URLSafeTimedSerializer:
    """A timed serializer whose timestamps come from ``clock`` (the login's own clock)."""
    import itsdangerous  # lazily: only web apps need it

    class Signer(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return itsdangerous.URLSafeTimedSerializer(
        key, salt=_SALT, signer=Signer, signer_kwargs={"digest_method": hashlib.sha256}
    )


class WebLogin:
    """The OAuth login of a web app's users.

    Args:
        provider: The provider (its client must have ``redirect_uri`` registered).
        redirect_uri: The app's own callback URL (https, or http on loopback in development).
        secret: Key for signing the login cookie (at least 32 bytes; keep it secret).
        storage_for: Returns the storage for a user key (e.g. a Redis key per user).
        cookie_name: The login cookie's name.
        max_age: Seconds a started login stays valid.
        http_client: An AsyncClient for the token endpoint (not closed by us).
        clock: Wall clock, seconds since the epoch.
    """

    cookie_path = "/"

    def __init__(
        self,
        provider: ProviderConfig,
        *,
        redirect_uri: str,
        secret: bytes | str,
        storage_for: Callable[[str], AuthStorage],
        cookie_name: str = "vandamme_oauth_login",
        max_age: int = 600,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.redirect_uri = require_endpoint_url(redirect_uri, what="redirect_uri")
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 32:
            raise ValidationError("the login cookie secret must be at least 32 bytes")
        self._cookies = _serializer(key, clock)
        self._storage_for = storage_for
        self.cookie_name = cookie_name
        self.max_age = max_age
        self._tokens = TokenClient(provider, http_client=http_client, clock=clock)
        self._clock = clock
        self._used: dict[str, float] = {}

    async def aclose(self) -> None:
        """Close the HTTP client if we created it."""
        await self._tokens.aclose()

    def cookie_options(self) -> dict[str, Any]:
        """Keyword arguments for the framework's ``set_cookie``."""
        return {
            "max_age": self.max_age,
            "path": self.cookie_path,
            "httponly": True,
            "samesite": "Lax",
            "secure": self.redirect_uri.startswith("https://"),
        }

    def begin(self, user_key: str) -> tuple[str, str]:
        """Start a login for ``user_key``: the authorization URL and the cookie value."""
        state, pkce = new_state(), new_pkce()
        cookie = self._cookies.dumps({"s": state, "v": pkce.verifier, "u": user_key})
        url = build_authorization_url(
            self.provider, redirect_uri=self.redirect_uri, state=state, pkce=pkce
        )
        return url, cookie

    def _open(self, cookie: str | None) -> dict[str, Any]:
        import itsdangerous

        if not cookie:
            raise StateMismatchError(
                "this browser has no login in progress (cookie missing): start again"
            )
        try:
            data = self._cookies.loads(cookie, max_age=self.max_age)
        except itsdangerous.SignatureExpired:
            raise AuthorizationError("the login took too long and expired: start again") from None
        except itsdangerous.BadData:
            raise StateMismatchError("the login cookie is not valid: start again") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "svu"):
            raise StateMismatchError("the login cookie is not valid: start again")
        return data

    async def complete(self, params: Mapping[str, str], cookie: str | None) -> tuple[str, AuthData]:
        """Finish the login from the callback parameters and the login cookie.

        Returns:
            The user key and the stored tokens.

        Raises:
            StateMismatchError: no, a forged, or a spent login cookie / state.
            AuthorizationError, IssuerMismatchError: the provider's answer was refused.
            TokenEndpointError, TokenError, NetworkError, StorageError: as for any login.
        """
        with telemetry.login("web", self.provider):
            return await self._complete(params, cookie)

    async def _complete(
        self, params: Mapping[str, str], cookie: str | None
    ) -> tuple[str, AuthData]:
        data = self._open(cookie)
        now = self._clock()
        self._used = {s: t for s, t in self._used.items() if t > now}
        if data["s"] in self._used:
            raise StateMismatchError("this login was already completed: start again")
        code = parse_callback(
            params,
            expected_state=data["s"],
            issuer=self.provider.issuer,
            require_iss=self.provider.require_iss,
        )
        self._used[data["s"]] = now + self.max_age
        auth = await self._tokens.exchange_code(
            code=code, redirect_uri=self.redirect_uri, verifier=data["v"]
        )
        await self._storage_for(data["u"]).write_auth(auth)
        return str(data["u"]), auth
