"""TokenManagerAuth (httpx) against real loopback servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integrations.conftest import Running, TokenServer
from vandamme_oauth import TokenManager
from vandamme_oauth.integrations.httpx import TokenManagerAuth
from vandamme_oauth.providers import chatgpt


async def test_adds_bearer_and_account_headers(servers: Running, manager: TokenManager) -> None:
    """Bearer token and ChatGPT-Account-ID are added for the ChatGPT provider."""
    async with httpx.AsyncClient(auth=TokenManagerAuth(manager), trust_env=False) as client:
        response = await client.post(f"{servers.upstream.url}/v1/x", content=b"abc")
    assert response.status_code == 200
    assert servers.upstream.seen == [("Bearer AT0", "acct-7", 3)]


async def test_401_refreshes_once_and_retries_once(
    servers: Running, manager: TokenManager, token_server: TokenServer
) -> None:
    """A 401 for the current token: one refresh, one retry with the new token; concurrent
    401s still cost a single refresh."""
    servers.upstream.reject.add("AT0")
    async with httpx.AsyncClient(auth=TokenManagerAuth(manager), trust_env=False) as client:
        import asyncio

        responses = await asyncio.gather(
            *(client.post(f"{servers.upstream.url}/v1/x", content=b"hello") for _ in range(5))
        )
    assert [r.status_code for r in responses] == [200] * 5
    assert token_server.refreshes == 1
    assert [s[0] for s in servers.upstream.seen].count("Bearer AT1") == 5


async def test_streaming_upload_passes_through_and_is_not_replayed(
    servers: Running, manager: TokenManager, token_server: TokenServer
) -> None:
    """A 16 MiB streamed body reaches the upstream; on a 401 a stream is not replayed (the
    401 is returned), but the manager is told, so the next request uses a fresh token."""
    chunk = b"x" * 65536

    async def body() -> AsyncIterator[bytes]:
        for _ in range(256):
            yield chunk

    auth = TokenManagerAuth(manager)
    assert auth.requires_request_body is False
    async with httpx.AsyncClient(auth=auth, trust_env=False, timeout=60) as client:
        ok = await client.post(f"{servers.upstream.url}/upload", content=body())
        assert ok.json() == {"received": 16 * 1024 * 1024}
        servers.upstream.reject.add("AT0")
        refused = await client.post(f"{servers.upstream.url}/upload", content=body())
        assert refused.status_code == 401
        again = await client.post(f"{servers.upstream.url}/upload", content=b"small")
    assert again.status_code == 200
    assert token_server.refreshes == 1
    assert servers.upstream.seen[-1][0] == "Bearer AT1"


def test_sync_client_is_refused(manager: TokenManager) -> None:
    """A sync httpx.Client cannot use the async manager: a clear RuntimeError."""
    with httpx.Client(auth=TokenManagerAuth(manager)) as client:  # noqa: SIM117
        with pytest.raises(RuntimeError, match="AsyncClient"):
            client.get("http://127.0.0.1:9/")


async def test_generic_provider_sends_no_account_header(
    servers: Running, manager: TokenManager
) -> None:
    """account_header=None turns the account header off."""
    async with httpx.AsyncClient(
        auth=TokenManagerAuth(manager, account_header=None), trust_env=False
    ) as client:
        await client.get(f"{servers.upstream.url}/v1/y")
    assert servers.upstream.seen == [("Bearer AT0", None, 0)]


async def test_chatgpt_backend_headers_and_the_clients_session_id(
    servers: Running, manager: TokenManager
) -> None:
    """For ChatGPT, the backend's header set from the one header function; a session_id
    the client set itself passes through unchanged."""
    async with httpx.AsyncClient(auth=TokenManagerAuth(manager), trust_env=False) as client:
        await client.get(f"{servers.upstream.url}/v1/x", headers={"session_id": "conv-42"})
        await client.get(f"{servers.upstream.url}/v1/y")
    auth = await manager.get_auth_data()
    expected = {k.lower(): v for k, v in chatgpt.backend_headers(auth).items()}
    with_session, without = servers.upstream.headers
    assert {k: with_session[k] for k in expected} == expected
    assert with_session["session_id"] == "conv-42"
    assert {k: without[k] for k in expected} == expected
    assert "session_id" not in without
    assert without["originator"] == "codex_cli_rs"
    assert without["user-agent"].startswith("codex_cli_rs/")
