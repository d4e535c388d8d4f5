"""WebLogin: sign a web app's users in with OAuth, framework-agnostic (aiohttp and Starlette
adapters mount it).

``begin(user_key)`` makes a state and a PKCE pair, and returns the authorization URL plus a
cookie value binding them to this browser: HMAC-SHA256-signed JSON of state, verifier, the
app's user key and the time. The cookie is HttpOnly, SameSite=Lax (sent on the provider's
top-level redirect back), Secure on https, and lives ``max_age`` seconds. ``complete()``
checks the signature and age, then judges the callback like the CLI's loopback login
(state in constant time, ``error``, ``iss``, ``code``), exchanges the code once, and stores
the tokens under the user's key. A state is accepted once per process; the provider's code
is single-use anyway. The verifier is signed, not encrypted: it only ever goes to the
browser that started the login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from .._exceptions import AuthorizationError, StateMismatchError, ValidationError
from .._pkce import new_pkce, new_state
from .._protocol import build_authorization_url, parse_callback
from .._token_client import TokenClient
from .._validation import require_endpoint_url

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx

    from .._provider import ProviderConfig
    from ..storage._base import AuthData, AuthStorage

__all__ = ["WebLogin"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
        self._key = key
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

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def begin(self, user_key: str) -> tuple[str, str]:
        """Start a login for ``user_key``: the authorization URL and the cookie value."""
        state, pkce = new_state(), new_pkce()
        payload = json.dumps(
            {"s": state, "v": pkce.verifier, "u": user_key, "t": int(self._clock())},
            separators=(",", ":"),
        ).encode()
        cookie = f"{_b64(payload)}.{self._sign(payload)}"
        url = build_authorization_url(
            self.provider, redirect_uri=self.redirect_uri, state=state, pkce=pkce
        )
        return url, cookie

    def _open(self, cookie: str | None) -> dict[str, Any]:
        if not cookie or "." not in cookie:
            raise StateMismatchError(
                "this browser has no login in progress (cookie missing): start again"
            )
        body, signature = cookie.rsplit(".", 1)
        try:
            payload = _unb64(body)
        except ValueError:
            raise StateMismatchError("the login cookie is malformed: start again") from None
        if not hmac.compare_digest(self._sign(payload), signature):
            raise StateMismatchError("the login cookie's signature is wrong: start again")
        data: dict[str, Any] = json.loads(payload)
        if self._clock() - float(data["t"]) > self.max_age:
            raise AuthorizationError("the login took too long and expired: start again")
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
