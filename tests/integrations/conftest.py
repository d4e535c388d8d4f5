"""Shared pieces for adapter tests: a loopback upstream API and a manager whose token
endpoint is an in-process fake (so a refresh is counted and instant)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from vandamme_oauth import AuthData, InMemoryAuthStorage, ProviderConfig, TokenManager


class Upstream:
    """A loopback API: records auth headers and body sizes; answers 401 to `reject`ed
    tokens; `/redirect` sends the client to another origin."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None, int]] = []
        self.headers: list[dict[str, str]] = []
        self.reject: set[str] = set()
        self.redirect_to = ""
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        size = 0
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
        auth = request.headers.get("Authorization")
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.seen.append((auth, request.headers.get("ChatGPT-Account-ID"), size))
        if request.path == "/redirect":
            return web.Response(status=302, headers={"Location": self.redirect_to})
        if auth is not None and auth.removeprefix("Bearer ") in self.reject:
            return web.Response(status=401)
        return web.json_response({"received": size})


@dataclass
class Running:
    upstream: Upstream
    other: Upstream
    runners: list[web.AppRunner] = field(default_factory=list)


async def _serve(upstream: Upstream) -> web.AppRunner:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def servers() -> AsyncIterator[Running]:
    """Two loopback APIs on different ports (two origins)."""
    running = Running(Upstream(), Upstream())
    running.runners = [await _serve(running.upstream), await _serve(running.other)]
    running.upstream.redirect_to = f"{running.other.url}/landing"
    yield running
    for runner in running.runners:
        await runner.cleanup()


class TokenServer:
    """Rotating token endpoint behind httpx.MockTransport; counts refreshes."""

    def __init__(self) -> None:
        self.refreshes = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.refreshes += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"AT{self.refreshes}",
                "refresh_token": f"RT{self.refreshes}",
                "expires_in": 3600,
            },
        )


@pytest.fixture
def token_server() -> TokenServer:
    return TokenServer()


@pytest.fixture
async def manager(token_server: TokenServer) -> AsyncIterator[TokenManager]:
    """A ChatGPT-provider manager with a valid token AT0 for account acct-7."""
    now = time.time()
    login = AuthData(
        access_token="AT0",
        refresh_token="RT0",
        account_id="acct-7",
        expires_at=now + 3600,
        last_refresh=now,
    )
    storage = InMemoryAuthStorage(login)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(token_server.handler)) as http,
        TokenManager(ProviderConfig.chatgpt(), storage, http_client=http) as m,
    ):
        yield m
