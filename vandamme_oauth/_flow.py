"""OAuthFlow: the interactive login (authorization code + PKCE, RFC 6749 4.1, RFC 7636).

``authenticate()`` makes a fresh state and PKCE pair, starts the loopback callback server,
opens the browser on the authorization URL and waits. The first callback with the right state
is judged (state, error, ``iss``, code), the code is exchanged once, the tokens are written to
storage, and only then does the browser see the success page. Any outcome (success, error,
timeout, cancellation) closes the server and releases the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio.to_thread

from . import _telemetry as telemetry
from ._closing import AsyncClosing
from ._exceptions import AuthorizationError, StateMismatchError, TokenEndpointError
from ._pkce import new_pkce, new_state
from ._protocol import build_authorization_url, parse_callback, parse_pasted
from ._token_client import TokenClient
from .storage._base import store_login

if TYPE_CHECKING:
    import httpx

    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["OAuthFlow"]

log = logging.getLogger(__name__)

OpenBrowser = Callable[[str], Awaitable[object] | object]


async def _default_open_browser(url: str) -> None:
    import webbrowser  # lazily: it imports subprocess and friends

    print(f"Open this URL to sign in:\n\n  {url}\n", file=sys.stderr, flush=True)  # noqa: T201
    opened = await anyio.to_thread.run_sync(webbrowser.open, url)
    log.info("browser %s", "opened" if opened else "could not be opened")
    if not opened:
        # Say so now rather than let the user wait out the timeout.
        print(  # noqa: T201
            "No browser could be opened here: open the URL above on any machine that can "
            "reach this one, or run `vandamme-oauth login --device`.",
            file=sys.stderr,
            flush=True,
        )


class OAuthFlow(AsyncClosing):
    """Log a user in through the browser and store the tokens.

    Args:
        provider: The provider to log in to.
        storage: Where the tokens go once obtained.
        open_browser: Called instead of opening the system browser, once per login, with
            the full authorization URL (a ``str``) when the callback server is listening.
            A plain function or an ``async`` one (it is awaited); it must not block the
            event loop. An exception it raises ends the login. Default: print the URL on
            stderr and open the system browser (in a worker thread).
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

    async def authenticate(
        self,
        *,
        timeout: float = 300.0,
        on_listening: Callable[[str], object] | None = None,
        paste: Callable[[], Awaitable[str | None]] | None = None,
        on_paste_rejected: Callable[[str], object] | None = None,
    ) -> AuthData:
        """Run the whole login and return the stored [`AuthData`][vandamme_oauth.AuthData].

        Args:
            timeout: Seconds to wait for the browser to come back.
            on_listening: Called with the redirect URI once the server listens and the
                browser was opened (e.g. to tell the user what we are waiting for).
            paste: Paste-back for browsers that cannot reach this machine: an async function
                returning the next text the user pasted (the final redirect URL, or the bare
                code), or None when there will be no more. It runs beside the loopback
                listener; whichever delivers a valid callback first wins.
            on_paste_rejected: Called with the reason when a pasted text is refused and the
                login goes on waiting.

        Raises:
            CallbackTimeoutError: no callback in time.
            AuthorizationError, IssuerMismatchError: the provider's answer was refused.
            CallbackServerError: no port could be opened.
            TokenEndpointError, TokenError, NetworkError: the code exchange failed.
            StorageError: the tokens could not be stored.
        """
        method = "paste" if paste is not None else "browser"
        with telemetry.login(method, self.provider):
            return await self._authenticate(
                timeout=timeout,
                on_listening=on_listening,
                paste=paste,
                on_paste_rejected=on_paste_rejected,
            )

    async def _authenticate(
        self,
        *,
        timeout: float,
        on_listening: Callable[[str], object] | None,
        paste: Callable[[], Awaitable[str | None]] | None,
        on_paste_rejected: Callable[[str], object] | None,
    ) -> AuthData:
        # Lazy import: only a login needs aiohttp (keeps `import vandamme_oauth` light).
        from ._callback_server import CallbackServer, Refused

        state = new_state()
        pkce = new_pkce()
        redirect_uri = ""

        async def exchange(code: str) -> AuthData:
            log.info("callback accepted; exchanging the code")
            auth = await self._tokens.exchange_code(
                code=code, redirect_uri=redirect_uri, verifier=pkce.verifier
            )
            await store_login(self.storage, auth, self.provider.to_dict())
            log.info("login stored", extra={"account_id": auth.account_id})
            return auth

        async def on_callback(params: Mapping[str, str]) -> AuthData:
            code = parse_callback(
                params,
                expected_state=state,
                issuer=self.provider.issuer,
                require_iss=self.provider.require_iss,
            )
            return await exchange(code)

        async def on_bare_code(params: Mapping[str, str]) -> AuthData:
            # A bare code carries no state to check, so the provider is the judge: a code it
            # refuses (mistyped, cut short, from another attempt) is refused here too, and the
            # login keeps waiting; the verifier is still good and the real callback may come.
            try:
                return await exchange(params["code"])
            except TokenEndpointError as exc:
                if exc.transient:
                    raise
                raise Refused(
                    f"the provider did not accept that code ({exc.error or exc.status_code})"
                ) from None

        provider = self.provider
        host = provider.redirect_host.strip("[]")
        server = CallbackServer(
            on_callback,
            path=provider.redirect_path,
            ports=provider.ports or (0,),
            host="127.0.0.1" if host == "localhost" else host,
            # Generic providers: IPv4 loopback, else IPv6 loopback (RFC 8252 7.3).
            hosts=("127.0.0.1", "::1") if host == "127.0.0.1" else (),
            also_ipv6=host == "localhost",
            localhost=host == "localhost",
            cancel_busy_port=provider.cancel_busy_port,
        )

        async def paste_loop(read: Callable[[], Awaitable[str | None]]) -> None:
            while (text := await read()) is not None:
                try:
                    params, bare = parse_pasted(text)
                    judge = on_bare_code if bare else None
                    if await server.submit(params, judge=judge):
                        return
                except (StateMismatchError, AuthorizationError, Refused) as exc:
                    if exc.error:  # the provider's own error= answer: the login is over
                        server.fail(exc)
                        return
                    log.warning("pasted text refused: %s", exc)
                    if on_paste_rejected is not None:
                        on_paste_rejected(exc.message)

        async with server:
            if server.host == "::1" and host == "127.0.0.1":
                provider = provider.replace(redirect_host="::1")
            redirect_uri = provider.redirect_uri(server.port)
            url = build_authorization_url(
                provider, redirect_uri=redirect_uri, state=state, pkce=pkce
            )
            if self._open_browser is None:
                await _default_open_browser(url)
            else:
                opened = self._open_browser(url)
                if inspect.isawaitable(opened):
                    await opened
                log.info("authorization URL handed to open_browser")
            if on_listening is not None:
                on_listening(redirect_uri)
            paster = asyncio.create_task(paste_loop(paste)) if paste is not None else None
            try:
                return await server.wait(timeout)
            finally:
                if paster is not None:
                    paster.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await paster
