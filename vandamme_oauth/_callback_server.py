"""The loopback callback server (RFC 8252 section 7.3): an aiohttp app on 127.0.0.1.

It listens only while a login is pending, serves ``{path}`` (GET, and POST for
``response_mode=form_post``), ``/success`` and ``/cancel``, answers 404 to anything else and
keeps waiting. The outcome is one `Future`: the first callback whose state
matches completes it, whatever its outcome, so a state is used once. Every page is static or
HTML-escaped and carries ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer``, a
restrictive CSP and ``Connection: close``. The access log is off: callback URLs hold codes.

Each callback is judged in a task the server owns (one at a time), and the judgement ends in
a `Verdict`. The login ``timeout`` bounds the wait for the browser only: a callback
that is being judged when it runs out (the code exchange in flight) gets ``exchange_timeout``
more seconds, and its true outcome is reported. Closing the server (a cancelled login)
cancels a judgement in flight, so cancellation ends the login at once. Only the browser whose
callback was accepted is sent to ``/success?t=<ticket>``; a stray ``/success`` neither ends
nor spoils the wait for it.

Only this machine's programs and the user's browser are heard (`vandamme_oauth._loopback_guard`):
every route answers only the server's own ``Host`` (no DNS rebinding), ``/cancel`` refuses what
a web page sends, and connections are bounded in number and in the time they take to send a
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import hmac
import html
import logging
import secrets
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
from ._http_client import shared_ssl_context
from ._login import AuthData
from ._loopback_guard import (
    ConnectionGuard,
    GuardedSite,
    allowed_hosts,
    cancel_allowed,
    host_allowed,
)

__all__ = ["CallbackServer", "Refused", "Verdict"]

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


class Refused(OAuthFlowError):
    """A judge's answer meaning "not this one": the input is refused and the login goes on
    waiting (a pasted code that the provider did not accept, say)."""


class Verdict(enum.Enum):
    """How the judgement of one callback ended."""

    ACCEPTED = "accepted"  #: the login is stored: send the browser to the success page
    NOT_OURS = "not ours"  #: the state matches no pending login: refuse it, keep waiting
    REFUSED = "refused"  #: the judge refused this input (`Refused`): keep waiting
    FAILED = "failed"  #: the login ended with an error (the provider's, or the exchange's)
    BROKEN = "broken"  #: an unexpected error ended the login
    FINISHED = "finished"  #: the login had already ended


_STATUS = {
    Verdict.NOT_OURS: 400,
    Verdict.REFUSED: 400,
    Verdict.FAILED: 400,
    Verdict.BROKEN: 500,
    Verdict.FINISHED: 400,
}


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
            `StateMismatchError` or `Refused` answers 400 and keeps waiting;
            any other error ends the login with that error.
        path: The callback path.
        ports: Ports to try in order; ``(0,)`` picks an ephemeral port.
        host: The loopback address to bind; ``hosts`` gives fallbacks (e.g. ``::1`` on a
            machine without IPv4 loopback).
        also_ipv6: Also listen on ``::1`` (best effort) for ``localhost`` redirect URIs.
        cancel_busy_port: Send ``GET /cancel`` to a busy port and retry before moving on.
        success_grace: Seconds `wait()` lingers for the browser to fetch ``/success``.
        exchange_timeout: Seconds a callback already being judged when the login timeout
            runs out gets to finish (its code exchange and storage write).
        localhost: Also answer requests whose ``Host`` is ``localhost:PORT`` (for redirect
            URIs that name ``localhost``); ``127.0.0.1:PORT`` and ``[::1]:PORT`` always.
        max_connections: Connections kept at once; beyond that the oldest one that has not
            sent a request yet is closed.
        request_timeout: Seconds a connection has to send its request head, and a form_post
            callback its body.
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
        exchange_timeout: float = 60.0,
        localhost: bool = False,
        max_connections: int = 64,
        request_timeout: float = 10.0,
    ) -> None:
        self._on_callback = on_callback
        self.path = path
        self._ports = tuple(ports) or (0,)
        self.host = host
        self._hosts = tuple(hosts) or (host,)
        self._also_ipv6 = also_ipv6
        self._cancel_busy_port = cancel_busy_port
        self._success_grace = success_grace
        self._exchange_timeout = exchange_timeout
        self._runner: web.AppRunner | None = None
        self._judging = asyncio.Lock()
        self._judgement: asyncio.Task[tuple[Verdict, str, str]] | None = None
        self._ticket = secrets.token_urlsafe(16)
        self._conflicts: list[str] = []  # addresses another program holds
        self._result: asyncio.Future[AuthData] = asyncio.get_running_loop().create_future()
        self._success_served = asyncio.Event()
        self._localhost = localhost
        self._request_timeout = request_timeout
        self.connections = ConnectionGuard(limit=max_connections, timeout=request_timeout)
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
        app = web.Application(middlewares=[self._screen])
        app.router.add_route("GET", self.path, self._handle_callback)
        app.router.add_route("POST", self.path, self._handle_callback)
        app.router.add_get("/success", self._handle_success)
        app.router.add_get("/cancel", self._handle_cancel)
        self.host = _first_bindable(self._hosts)
        # shutdown_timeout: handlers still running at close (a cancelled judgement's) get a
        # moment, not aiohttp's default minute.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
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
        also = f" (another program holds {', '.join(self._conflicts)})" if self._conflicts else ""
        raise CallbackServerError(
            f"cannot listen on {self.host} port {ports}: in use by another program{also}. "
            f"Finish or stop the other login (e.g. 'lsof -i :{self._ports[0]}' shows who)"
        )

    async def _bind(self, runner: web.AppRunner, port: int) -> bool:
        tries = 10 if (port and self._cancel_busy_port) else 1
        for attempt in range(tries):
            site = GuardedSite(runner, self.host, port, guard=self.connections)
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
            return not self._also_ipv6 or await self._bind_ipv6_too(runner, site)
        return False

    async def _bind_ipv6_too(self, runner: web.AppRunner, ipv4: GuardedSite) -> bool:
        """For ``localhost`` redirects: also listen on ``[::1]:port``, since a browser may
        resolve localhost to ::1 (SECURITY.md). A machine without IPv6 loopback is fine;
        another program on ``[::1]:port`` is not (it would receive the code): then the
        IPv4 site is closed again and False moves on to the next port."""
        try:
            await GuardedSite(runner, "::1", self.port, guard=self.connections).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                log.info("no IPv6 loopback here; listening on IPv4 only", extra={"port": self.port})
                return True
            log.warning("[::1]:%d is taken by another program; trying the next port", self.port)
            self._conflicts.append(f"[::1]:{self.port}")
            await ipv4.stop()
            return False
        return True

    async def _send_cancel(self, port: int) -> None:
        # A stale login server (ours or the Codex CLI's) stops when asked at /cancel.
        url = f"http://127.0.0.1:{port}/cancel"
        try:
            context = await shared_ssl_context()  # unused for http://, but never built here
            async with httpx.AsyncClient(timeout=2.0, trust_env=False, verify=context) as client:
                await client.get(url)
            log.info("asked the stale login server to stop", extra={"port": port})
        except httpx.HTTPError:
            log.info("the busy port did not answer /cancel", extra={"port": port})

    async def close(self) -> None:
        """Stop listening and release the port (idempotent); a judgement in flight is
        cancelled (the login was abandoned)."""
        judgement = self._judgement
        if judgement is not None and not judgement.done():
            judgement.cancel()
            await asyncio.wait({judgement})
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.debug("callback server closed", extra={"port": self.port})
        if not self._result.done():
            self._result.cancel()
        elif not self._result.cancelled():
            self._result.exception()  # retrieved: nobody may be waiting any more

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
            if self._judgement is None or self._judgement.done():
                raise CallbackTimeoutError(
                    f"no login arrived at the callback within {timeout:g} s; start the login again"
                ) from None
            # A callback arrived in time and is being exchanged: report how that ends.
            log.info("login timeout reached while a callback is judged; waiting for it")
            try:
                async with asyncio.timeout(self._exchange_timeout):
                    result = await asyncio.shield(self._result)
            except TimeoutError:
                raise CallbackTimeoutError(
                    f"the code exchange did not finish within {self._exchange_timeout:g} s; "
                    "is the provider's token endpoint reachable? Start the login again"
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
            Refused: the judge refused them; still waiting.
        """
        verdict, _, message = await self._judge(params, source=source, judge=judge)
        if verdict is Verdict.ACCEPTED:
            self._success_served.set()  # no browser will fetch /success
        elif verdict is Verdict.FINISHED:
            return False
        elif verdict is Verdict.NOT_OURS:
            raise StateMismatchError(message)
        elif verdict is Verdict.REFUSED:
            raise Refused(message)
        return True

    async def _judge(
        self, params: Mapping[str, str], *, source: str, judge: OnCallback | None = None
    ) -> tuple[Verdict, str, str]:
        """Judge one callback in a task the server owns; (verdict, page title, message)."""
        async with self._judging:
            if self._result.done():
                return Verdict.FINISHED, "Login already finished", "You can close this tab."
            task = asyncio.create_task(self._run_judge(params, source, judge or self._on_callback))
            self._judgement = task
            # shield: a browser that disconnects does not abandon an exchange in flight.
            return await asyncio.shield(task)

    async def _run_judge(
        self, params: Mapping[str, str], source: str, judge: OnCallback
    ) -> tuple[Verdict, str, str]:
        try:
            auth = await judge(params)
        except StateMismatchError as exc:
            log.warning(
                "callback rejected: state mismatch; still waiting", extra={"source": source}
            )
            return Verdict.NOT_OURS, "Sign-in link not recognised", exc.message
        except Refused as exc:
            log.warning("callback refused: %s; still waiting", exc, extra={"source": source})
            return Verdict.REFUSED, "Not accepted", exc.message
        except OAuthError as exc:
            log.warning("callback ended the login with an error: %s", exc, extra={"source": source})
            self.fail(exc)
            return Verdict.FAILED, "Sign-in failed", exc.message
        except Exception as exc:
            log.exception("callback handling failed")
            self.fail(OAuthFlowError(f"the callback could not be handled: {type(exc).__name__}"))
            return Verdict.BROKEN, "Sign-in failed", "An internal error occurred; see the logs."
        if not self._result.done():
            self._result.set_result(auth)
        log.info("callback accepted; tokens stored", extra={"source": source})
        return Verdict.ACCEPTED, "Signed in", "You are signed in."

    @web.middleware
    async def _screen(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """Every route: a request head arrived (the connection is no longer idle), and it
        must name this server in its ``Host``, else 421 and the login keeps waiting."""
        self.connections.request_started(request.transport)
        allowed = allowed_hosts(self.port, localhost=self._localhost, bound=self.host)
        if not host_allowed(request.headers, allowed):
            log.warning("request for another host refused", extra={"path": request.path})
            return _page(
                421, "Misdirected request", "This server answers only its own loopback address."
            )
        return await handler(request)

    async def _handle_callback(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            try:
                async with asyncio.timeout(self._request_timeout):
                    form = await request.post()
            except TimeoutError:
                return _page(408, "Too slow", "The sign-in form did not arrive in time.")
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        verdict, title, message = await self._judge(params, source=f"http-{request.method.lower()}")
        if verdict is Verdict.ACCEPTED:
            raise web.HTTPFound(f"/success?t={self._ticket}", headers=_HEADERS)
        return _page(_STATUS[verdict], title, message)

    async def _handle_success(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("t", "")
        if not self._result.done() or not hmac.compare_digest(ticket, self._ticket):
            # Not the browser whose callback was accepted: it neither ends nor spoils the
            # wait for that one.
            return _page(404, "Not found", "No sign-in finished here.")
        self._success_served.set()
        return _page(200, "Signed in", "You are signed in. You can close this tab now.")

    async def _handle_cancel(self, request: web.Request) -> web.StreamResponse:
        if not cancel_allowed(request.headers):
            log.warning("a /cancel sent by a web page was refused; still waiting")
            return _page(403, "Forbidden", "Only a program on this machine can cancel a login.")
        log.info("login cancelled via /cancel")
        self.fail(OAuthFlowError("the login was cancelled (another login asked this one to stop)"))
        return _page(200, "Login cancelled", "This login was cancelled.")
