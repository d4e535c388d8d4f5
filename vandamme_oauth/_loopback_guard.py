"""Who the loopback server talks to: only this machine's programs and the user's browser on
the server's own address.

- **Host check** (DNS rebinding): a page on ``evil.example`` whose name now resolves to
  127.0.0.1 reaches the port with ``Host: evil.example:PORT``; every route answers only the
  server's own ``Host`` (``127.0.0.1:PORT``, ``[::1]:PORT``, and ``localhost:PORT`` where the
  redirect URI names ``localhost``). A request with no ``Host`` comes from no browser and is
  let through (a plain ``GET /cancel`` of an older program).
- **Programs only at** ``/cancel``: browsers mark what a page makes them send with fetch
  metadata (``Sec-Fetch-Site``) and ``Origin``; a program asking a stale login to give up
  its port sends neither.
- **Bounded connections**: at most ``limit`` connections are kept; a new one beyond that
  closes the oldest that has not yet sent a whole request head, and a connection that sends
  no request head within ``timeout`` seconds is closed. A local flood of slow connections
  cannot use up the process's file descriptors or keep the browser's callback out.

Pure checks (`host_allowed`, `cancel_allowed`) and the connection bookkeeping; the server
wires them in (`vandamme_oauth._callback_server`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ConnectionGuard", "GuardedSite", "allowed_hosts", "cancel_allowed", "host_allowed"]


def allowed_hosts(port: int, *, localhost: bool, bound: str = "127.0.0.1") -> frozenset[str]:
    """The ``Host`` values of requests meant for a loopback server on ``port`` (bound to
    ``bound``, and maybe ``::1`` too)."""
    bound = f"[{bound}]" if ":" in bound else bound
    hosts = {f"127.0.0.1:{port}", f"[::1]:{port}", f"{bound}:{port}"}
    if localhost:
        hosts.add(f"localhost:{port}")
    return frozenset(hosts)


def host_allowed(headers: Mapping[str, str], allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` is one of ``allowed`` (case-insensitive; a request
    without one, which no browser sends, is allowed)."""
    host = headers.get("Host")
    return host is None or host.strip().lower() in allowed


def cancel_allowed(headers: Mapping[str, str]) -> bool:
    """Whether ``/cancel`` may act on a request: not when a browser says a page sent it
    (``Origin``, or ``Sec-Fetch-Site`` other than ``none``/``same-origin``)."""
    if "Origin" in headers:
        return False
    site = headers.get("Sec-Fetch-Site")
    return site is None or site.strip().lower() in ("none", "same-origin")


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard's bookkeeping around."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a whole request head arrived
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a TCP server's
        self.transport = transport
        self.guard.opened(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def drop(self) -> None:
        """Close at once (evicted, or too slow)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class ConnectionGuard:
    """Keeps at most ``limit`` connections and closes those that send no request head
    within ``timeout`` seconds.

    Args:
        limit: Connections kept at once; the oldest idle one makes room for a new one.
        timeout: Seconds a connection has to send its first request head.
    """

    def __init__(self, *, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._open: dict[_Connection, None] = {}  # in the order they were accepted
        self._by_transport: dict[object, _Connection] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` around aiohttp's ``factory``."""
        return lambda: _Connection(self, factory())

    def opened(self, conn: _Connection) -> None:
        self._open[conn] = None
        self._by_transport[conn.transport] = conn
        conn.timer = asyncio.get_running_loop().call_later(self.timeout, conn.drop)
        if len(self._open) > self.limit:
            idle = next((c for c in self._open if not c.busy and c is not conn), None)
            if idle is not None:
                self.evicted += 1
                idle.drop()

    def closed(self, conn: _Connection) -> None:
        self._open.pop(conn, None)
        self._by_transport.pop(conn.transport, None)
        if conn.timer is not None:
            conn.timer.cancel()

    def request_started(self, transport: object) -> None:
        """A whole request head arrived on ``transport``: its connection is no longer idle
        (the handler bounds what comes next)."""
        conn = self._by_transport.get(transport)
        if conn is not None:
            conn.busy = True
            if conn.timer is not None:
                conn.timer.cancel()


class GuardedSite(web.TCPSite):
    """A `web.TCPSite` whose connections pass through a `ConnectionGuard`."""

    __slots__ = ("_guard",)

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        # TCPSite.start with our factory: registers the site, then listens.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None  # noqa: S101 - set up by runner.setup()
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.wrap(server), self._host, self._port, backlog=self._backlog
        )
