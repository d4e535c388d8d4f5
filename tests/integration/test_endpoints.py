"""Many managers, one token endpoint (a real aiohttp server on loopback): at most
``max_refreshes`` refreshes in flight, one connection pool shared, and a 429 pausing every
refresh there."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING

import pytest
import trustme
from aiohttp import web

from tests.support.off_loop import OffLoopGuard
from vandamme_oauth import (
    AuthData,
    InMemoryAuthStorage,
    ProviderConfig,
    TokenEndpointError,
    TokenManager,
    _http_client,
)
from vandamme_oauth._endpoints import endpoint_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


class TokenServer:
    """Counts refreshes in flight and the client ports they came from. While ``hold`` is
    set, answers are released only when ``hold`` requests are in flight (or every one
    still expected is), so that a broken bound shows as more in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.done = 0
        self.expected = 0
        self.hold = 0
        self.ports: set[int] = set()
        self.status = 200
        self.changed = asyncio.Condition()

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.ports.add(peer[1])
        async with self.changed:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.changed.notify_all()
            if self.hold:
                await asyncio.wait_for(
                    self.changed.wait_for(
                        lambda: self.in_flight >= min(self.hold, self.expected - self.done)
                    ),
                    30,  # a hang guard, not a measurement
                )
            self.in_flight -= 1
            self.done += 1
            self.changed.notify_all()
        if self.status == 429:
            return web.json_response(
                {"error": "slow_down"}, status=429, headers={"Retry-After": "30"}
            )
        n, sent = self.done, str(form["refresh_token"])
        return web.json_response(
            {
                "access_token": f"AT{n}-{sent}",
                "refresh_token": f"RT{n}",
                "expires_in": 3600,
            }
        )


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[TokenServer, str]]:
    state = TokenServer()
    app = web.Application()
    app.router.add_post("/token", state.token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        scheme = "http" if context is None else "https"
        yield state, f"{scheme}://127.0.0.1:{site.port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[tuple[TokenServer, str]]:
    async with serving() as running:
        yield running


def provider(base: str) -> ProviderConfig:
    return ProviderConfig(
        name="many",
        issuer=base,
        client_id="c",
        authorization_endpoint=f"{base}/authorize",
        token_endpoint=f"{base}/token",
    )


def expired(n: int) -> AuthData:
    return AuthData(access_token=f"old{n}", refresh_token=f"R{n}", expires_at=time.time() - 1)


async def test_refreshes_in_flight_are_bounded_per_endpoint(
    server: tuple[TokenServer, str],
) -> None:
    """40 managers due at once, bound 16: the endpoint never sees more than 16 refreshes at
    once (and sees 16), and every caller gets its refreshed token."""
    state, base = server
    state.hold, state.expected = 16, 40
    managers = [
        TokenManager(provider(base), InMemoryAuthStorage(expired(n)), watch_interval=None)
        for n in range(40)
    ]
    tokens = await asyncio.gather(*(m.get_access_token() for m in managers))
    for m in managers:
        await m.aclose()
    assert state.most == 16
    assert endpoint_for(f"{base}/token").most_in_flight == 16  # what the client counted too
    assert sorted(t.split("-")[1] for t in tokens) == sorted(f"R{n}" for n in range(40))


async def test_managers_of_one_endpoint_share_one_connection_pool(
    server: tuple[TokenServer, str],
) -> None:
    """Three managers refreshing one after the other reach the endpoint over one reused
    connection: they share the endpoint's HTTP client."""
    state, base = server
    managers = [
        TokenManager(provider(base), InMemoryAuthStorage(expired(n)), watch_interval=None)
        for n in range(3)
    ]
    for m in managers:
        await m.get_access_token()
    assert state.done == 3
    assert len(state.ports) == 1
    for m in managers:
        await m.aclose()


async def test_a_429_pauses_every_refresh_to_that_endpoint(
    server: tuple[TokenServer, str],
) -> None:
    """One refresh answered 429 (Retry-After: 30): the other managers' refreshes meet the
    pause without a request of their own."""
    state, base = server
    state.status = 429
    first = TokenManager(provider(base), InMemoryAuthStorage(expired(0)), watch_interval=None)
    with pytest.raises(TokenEndpointError, match="HTTP 429"):
        await first.get_access_token()
    others = [
        TokenManager(provider(base), InMemoryAuthStorage(expired(n)), watch_interval=None)
        for n in range(1, 4)
    ]
    for m in others:
        with pytest.raises(TokenEndpointError, match="asked us to slow down") as caught:
            await m.get_access_token()
        assert caught.value.status_code == 429
        assert caught.value.retry_after is not None
        assert 0 < caught.value.retry_after <= 30
    assert state.done == 1
    for m in [first, *others]:
        await m.aclose()


async def test_the_shared_client_trusts_ssl_cert_file_and_loads_it_off_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An HTTPS token endpoint whose certificate only ``SSL_CERT_FILE`` vouches for (a
    corporate CA, say): the managers' shared client trusts it, and the bundle is loaded
    in a worker thread, once, never on the event loop."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setattr(_http_client, "_ssl_context", None)  # built again, under the guard
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    guard = OffLoopGuard(monkeypatch)
    async with serving(context) as (state, base):
        managers = [
            TokenManager(provider(base), InMemoryAuthStorage(expired(n)), watch_interval=None)
            for n in range(2)
        ]
        tokens = [await m.get_access_token() for m in managers]
        for m in managers:
            await m.aclose()
    assert [t.split("-")[1] for t in tokens] == ["R0", "R1"]
    assert len(state.ports) == 1  # one connection: one client
    assert guard.offences == []
    assert guard.calls == 1  # the one bundle, loaded in a thread
