"""The loopback callback server (RFC 8252 section 7.3): an aiohttp app on 127.0.0.1.

It listens only while a login is pending, serves ``{path}`` (GET, and POST for
``response_mode=form_post``), ``/success`` and ``/cancel``, answers 404 to anything else and
keeps waiting. The outcome is one :class:`asyncio.Future`: the first callback whose state
matches completes it, whatever its outcome, so a state is used once. Every page is static or
HTML-escaped and carries ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer``, a
restrictive CSP and ``Connection: close``. The access log is off: callback URLs hold codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import html
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Self

import httpx
from aiohttp import web

from ._closing import AsyncClosing
from ._exceptions import (
    CallbackServerError,
    CallbackTimeoutError,
    OAuthError,
    OAuthFlowError,
    StateMismatchError,
)
from .storage._base import AuthData

__all__ = ["CallbackServer"]

log = logging.getLogger(__name__)

OnCallback = Callable[[Mapping[str, str]], Awaitable[AuthData]]

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Connection": "close",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}
</style></head><body><h1>{title}</h1><p>{message}</p></body></html>
"""


def _first_bindable(hosts: Sequence[str]) -> str:
    """The first loopback address this machine can listen on (RFC 8252 7.3: do not assume
    an IP version)."""
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
        except OSError:
            log.info("loopback address unavailable", extra={"host": host})
            continue
        return host
    raise CallbackServerError(f"no loopback address can be bound here (tried {', '.join(hosts)})")


def _page(status: int, title: str, message: str) -> web.Response:
    body = _PAGE.format(title=html.escape(title), message=html.escape(message))
    return web.Response(
        status=status, text=body, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


class CallbackServer(AsyncClosing):
    """Serve one login's callback on loopback; an async context manager.

    Args:
        on_callback: Judges the callback parameters and returns the stored login. Raising
            :class:`StateMismatchError` answers 400 and keeps waiting; any other error ends
            the login with that error.
        path: The callback path.
        ports: Ports to try in order; ``(0,)`` picks an ephemeral port.
        host: The loopback address to bind; ``hosts`` gives fallbacks (e.g. ``::1`` on a
            machine without IPv4 loopback).
        also_ipv6: Also listen on ``::1`` (best effort) for ``localhost`` redirect URIs.
        cancel_busy_port: Send ``GET /cancel`` to a busy port and retry before moving on.
        success_grace: Seconds :meth:`wait` lingers for the browser to fetch ``/success``.
    """

    def __init__(
        self,
        on_callback: OnCallback,
        *,
        path: str = "/auth/callback",
        ports: Sequence[int] = (0,),
        host: str = "127.0.0.1",
        hosts: Sequence[str] = (),
        also_ipv6: bool = False,
        cancel_busy_port: bool = False,
        success_grace: float = 2.0,
    ) -> None:
        self._on_callback = on_callback
        self.path = path
        self._ports = tuple(ports) or (0,)
        self.host = host
        self._hosts = tuple(hosts) or (host,)
        self._also_ipv6 = also_ipv6
        self._cancel_busy_port = cancel_busy_port
        self._success_grace = success_grace
        self._runner: web.AppRunner | None = None
        self._judging = asyncio.Lock()
        self._result: asyncio.Future[AuthData] = asyncio.get_running_loop().create_future()
        self._success_served = asyncio.Event()
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def aclose(self) -> None:
        """Stop listening and release the port (what ``async with`` does on exit)."""
        await self.close()

    async def start(self) -> None:
        """Bind the first free port of ``ports`` and start serving.

        Raises:
            CallbackServerError: every port is taken; the message names them.
        """
        app = web.Application()
        app.router.add_route("GET", self.path, self._handle_callback)
        app.router.add_route("POST", self.path, self._handle_callback)
        app.router.add_get("/success", self._handle_success)
        app.router.add_get("/cancel", self._handle_cancel)
        self.host = _first_bindable(self._hosts)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            for port in self._ports:
                if await self._bind(runner, port):
                    self._runner = runner
                    log.info(
                        "callback server listening",
                        extra={"host": self.host, "port": self.port, "path": self.path},
                    )
                    return
        except BaseException:
            await runner.cleanup()
            raise
        await runner.cleanup()
        ports = " and ".join(str(p) for p in self._ports)
        raise CallbackServerError(
            f"cannot listen on 127.0.0.1 port {ports}: in use by another program. "
            f"Finish or stop the other login (e.g. 'lsof -i :{self._ports[0]}' shows who)"
        )

    async def _bind(self, runner: web.AppRunner, port: int) -> bool:
        tries = 10 if (port and self._cancel_busy_port) else 1
        for attempt in range(tries):
            site = web.TCPSite(runner, self.host, port)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise CallbackServerError(
                        f"cannot listen on {self.host}:{port}: {exc.strerror or exc}"
                    ) from exc
                log.info("callback port busy", extra={"port": port, "attempt": attempt + 1})
                if attempt == 0 and tries > 1:
                    await self._send_cancel(port)
                if attempt + 1 < tries:
                    await asyncio.sleep(0.2)  # the stale server needs a moment to close
                continue
            self.port = runner.addresses[-1][1]
            if self._also_ipv6:
                with contextlib.suppress(OSError):
                    await web.TCPSite(runner, "::1", self.port).start()
            return True
        return False

    async def _send_cancel(self, port: int) -> None:
        # A stale login server (ours or the Codex CLI's) stops when asked at /cancel.
        url = f"http://127.0.0.1:{port}/cancel"
        try:
            async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
                await client.get(url)
            log.info("asked the stale login server to stop", extra={"port": port})
        except httpx.HTTPError:
            log.info("the busy port did not answer /cancel", extra={"port": port})

    async def close(self) -> None:
        """Stop listening and release the port (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.debug("callback server closed", extra={"port": self.port})
        if not self._result.done():
            self._result.cancel()

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, timeout: float) -> AuthData:
        """Wait for the login's outcome.

        Raises:
            CallbackTimeoutError: nothing conclusive arrived within ``timeout`` seconds.
            OAuthError: the error the callback ended the login with.
        """
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(self._result)
        except TimeoutError:
            raise CallbackTimeoutError(
                f"no login arrived at the callback within {timeout:g} s; start the login again"
            ) from None
        # Let the browser fetch the success page before the port closes; bounded.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._success_grace):
                await self._success_served.wait()
        return result

    def fail(self, error: BaseException) -> None:
        """End the wait with ``error`` (used by a parallel path such as paste-back)."""
        if not self._result.done():
            self._result.set_exception(error)

    # -- handlers ---------------------------------------------------------------------------

    async def submit(
        self, params: Mapping[str, str], *, judge: OnCallback | None = None, source: str = "paste"
    ) -> bool:
        """Judge callback parameters that arrived another way (paste-back), exactly as an
        HTTP callback. First come, first served: False if the login had already ended.

        Raises:
            StateMismatchError: the parameters belong to no pending login; still waiting.
        """
        verdict = await self._judge(params, source=source, judge=judge)
        if verdict is None:
            self._success_served.set()  # no browser will fetch /success
            return True
        if verdict[0] == 409:
            return False
        if verdict[0] == 400 and not self._result.done():
            raise StateMismatchError(verdict[2])
        return True

    async def _judge(
        self, params: Mapping[str, str], *, source: str, judge: OnCallback | None = None
    ) -> tuple[int, str, str] | None:
        """Run the callback judgement once; None on success, else (status, title, message)."""
        async with self._judging:
            if self._result.done():
                return 409, "Login already finished", "You can close this tab."
            try:
                auth = await (judge or self._on_callback)(params)
            except StateMismatchError as exc:
                log.warning(
                    "callback rejected: state mismatch; still waiting", extra={"source": source}
                )
                return 400, "Sign-in link not recognised", exc.message
            except OAuthError as exc:
                log.warning(
                    "callback ended the login with an error: %s", exc, extra={"source": source}
                )
                self._result.set_exception(exc)
                return 400, "Sign-in failed", exc.message
            except Exception as exc:
                log.exception("callback handling failed")
                self._result.set_exception(
                    OAuthFlowError(f"the callback could not be handled: {type(exc).__name__}")
                )
                return 500, "Sign-in failed", "An internal error occurred; see the logs."
            self._result.set_result(auth)
            log.info("callback accepted; tokens stored", extra={"source": source})
            return None

    async def _handle_callback(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        verdict = await self._judge(params, source=f"http-{request.method.lower()}")
        if verdict is None:
            raise web.HTTPFound("/success", headers=_HEADERS)
        status, title, message = verdict
        return _page(400 if status == 409 else status, title, message)

    async def _handle_success(self, request: web.Request) -> web.StreamResponse:
        self._success_served.set()
        return _page(200, "Signed in", "You are signed in. You can close this tab now.")

    async def _handle_cancel(self, request: web.Request) -> web.StreamResponse:
        log.info("login cancelled via /cancel")
        self.fail(OAuthFlowError("the login was cancelled (another login asked this one to stop)"))
        return _page(200, "Login cancelled", "This login was cancelled.")
