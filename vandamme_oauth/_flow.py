"""OAuthFlow: the interactive login (authorization code + PKCE, RFC 6749 4.1, RFC 7636).

``authenticate()`` makes a fresh state and PKCE pair, starts the loopback callback server,
opens the browser on the authorization URL and waits. The first callback with the right state
is judged (state, error, ``iss``, code), the code is exchanged once, the tokens are written to
storage, and only then does the browser see the success page. Any outcome (success, error,
timeout, cancellation) closes the server and releases the port.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio.to_thread

from ._pkce import new_pkce, new_state
from ._protocol import build_authorization_url, parse_callback
from ._token_client import TokenClient

if TYPE_CHECKING:
    from types import TracebackType

    import httpx

    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["OAuthFlow"]

log = logging.getLogger(__name__)

OpenBrowser = Callable[[str], object]


async def _default_open_browser(url: str) -> None:
    import webbrowser  # lazily: it imports subprocess and friends

    print(f"Open this URL to sign in:\n\n  {url}\n", file=sys.stderr, flush=True)  # noqa: T201
    opened = await anyio.to_thread.run_sync(webbrowser.open, url)
    log.info("browser %s", "opened" if opened else "could not be opened")


class OAuthFlow:
    """Log a user in through the browser and store the tokens.

    Args:
        provider: The provider to log in to.
        storage: Where the tokens go once obtained.
        open_browser: ``fn(url)`` called with the authorization URL instead of opening the
            system browser (it must not block). Default: print the URL and open the browser.
        http_client: An AsyncClient for the token endpoint (not closed by us).
        clock: Wall clock, seconds since the epoch.
    """

    def __init__(
        self,
        provider: ProviderConfig,
        storage: AuthStorage,
        *,
        open_browser: OpenBrowser | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.storage = storage
        self._open_browser = open_browser
        self._tokens = TokenClient(provider, http_client=http_client, clock=clock)

    async def aclose(self) -> None:
        """Release the HTTP client (if we created it)."""
        await self._tokens.aclose()

    async def __aenter__(self) -> OAuthFlow:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def authenticate(
        self, *, timeout: float = 300.0, on_listening: Callable[[str], object] | None = None
    ) -> AuthData:
        """Run the whole login and return the stored :class:`AuthData`.

        Args:
            timeout: Seconds to wait for the browser to come back.
            on_listening: Called with the redirect URI once the server listens (e.g. to tell
                the user what we are waiting for).

        Raises:
            CallbackTimeoutError: no callback in time.
            AuthorizationError, IssuerMismatchError: the provider's answer was refused.
            CallbackServerError: no port could be opened.
            TokenEndpointError, TokenError, NetworkError: the code exchange failed.
            StorageError: the tokens could not be stored.
        """
        # Lazy import: only a login needs aiohttp (keeps `import vandamme_oauth` light).
        from ._callback_server import CallbackServer

        state = new_state()
        pkce = new_pkce()
        redirect_uri = ""

        async def on_callback(params: Mapping[str, str]) -> AuthData:
            code = parse_callback(
                params,
                expected_state=state,
                issuer=self.provider.issuer,
                require_iss=self.provider.require_iss,
            )
            log.info("callback accepted; exchanging the code")
            auth = await self._tokens.exchange_code(
                code=code, redirect_uri=redirect_uri, verifier=pkce.verifier
            )
            await self.storage.write_auth(auth)
            log.info("login stored", extra={"account_id": auth.account_id})
            return auth

        host = self.provider.redirect_host.strip("[]")
        server = CallbackServer(
            on_callback,
            path=self.provider.redirect_path,
            ports=self.provider.ports or (0,),
            host="127.0.0.1" if host == "localhost" else host,
            also_ipv6=self.provider.redirect_host == "localhost",
            cancel_busy_port=self.provider.cancel_busy_port,
        )
        async with server:
            redirect_uri = self.provider.redirect_uri(server.port)
            url = build_authorization_url(
                self.provider, redirect_uri=redirect_uri, state=state, pkce=pkce
            )
            if on_listening is not None:
                on_listening(redirect_uri)
            if self._open_browser is None:
                await _default_open_browser(url)
            else:
                self._open_browser(url)
                log.info("authorization URL handed to open_browser")
            return await server.wait(timeout)
