"""TokenManagerMiddleware (aiohttp client) against real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.integrations.conftest import Running, TokenServer
from vandamme_oauth import TokenManager
from vandamme_oauth.integrations.aiohttp import TokenManagerMiddleware
from vandamme_oauth.providers import chatgpt


async def test_adds_headers_only_for_pinned_origins(
    servers: Running, manager: TokenManager
) -> None:
    """The pinned origin gets the token; a redirect to another origin gets nothing."""
    middleware = TokenManagerMiddleware(manager, origins=[servers.upstream.url])
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
        async with session.get(f"{servers.upstream.url}/redirect") as response:
            assert response.status == 200
            assert str(response.url).startswith(servers.other.url)
        async with session.get(f"{servers.other.url}/direct") as response:
            assert response.status == 200
    assert servers.upstream.seen == [("Bearer AT0", "acct-7", 0)]
    assert servers.other.seen == [(None, None, 0), (None, None, 0)]


async def test_401_refreshes_once_and_retries(
    servers: Running, manager: TokenManager, token_server: TokenServer
) -> None:
    """Concurrent 401s for the current token cost one refresh; each request is retried."""
    servers.upstream.reject.add("AT0")
    middleware = TokenManagerMiddleware(manager, origins=[servers.upstream.url])
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:

        async def post() -> int:
            async with session.post(f"{servers.upstream.url}/v1", data=b"payload") as r:
                return r.status

        statuses = await asyncio.gather(*(post() for _ in range(5)))
    assert statuses == [200] * 5
    assert token_server.refreshes == 1


async def test_streamed_body_is_not_replayed(
    servers: Running, manager: TokenManager, token_server: TokenServer
) -> None:
    """A consumed streaming body is not sent twice: the 401 comes back, the next request
    uses the refreshed token."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 65536

    servers.upstream.reject.add("AT0")
    middleware = TokenManagerMiddleware(manager, origins=[servers.upstream.url])
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
        async with session.post(f"{servers.upstream.url}/up", data=body()) as response:
            assert response.status == 401
        async with session.post(f"{servers.upstream.url}/up", data=b"z") as response:
            assert response.status == 200
    assert servers.upstream.seen[0][2] == 64 * 65536
    assert token_server.refreshes == 1


def test_needs_an_origin(manager: TokenManager) -> None:
    """A middleware with no origin would send tokens nowhere (or everywhere): refused."""
    with pytest.raises(ValueError, match="origin"):
        TokenManagerMiddleware(manager, origins=[])


async def test_chatgpt_backend_headers_and_the_clients_session_id(
    servers: Running, manager: TokenManager
) -> None:
    """The middleware sends the same header set as the httpx adapter; the client's own
    session_id passes through."""
    middleware = TokenManagerMiddleware(manager, origins=[servers.upstream.url])
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        session.get(f"{servers.upstream.url}/v1/x", headers={"session_id": "conv-7"}) as response,
    ):
        assert response.status == 200
    auth = await manager.get_auth_data()
    expected = {k.lower(): v for k, v in chatgpt.backend_headers(auth).items()}
    (seen,) = servers.upstream.headers
    assert {k: seen[k] for k in expected} == expected
    assert seen["session_id"] == "conv-7"
