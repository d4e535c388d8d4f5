"""Redis data loss is not a logout, on a real valkey-server without persistence: after a
FLUSHALL or a restart the managers keep serving their valid token and one of them writes the
login back; a real logout leaves a mark every manager honours; a re-login whose version
number repeats after data loss is still noticed."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from harness.redis_server import RedisServer
from tests.support.managers import settled, watch_adoptions
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    NotAuthenticatedError,
    RedisAuthStorage,
    RetryPolicy,
    TokenManager,
)
from vandamme_oauth.storage import _redis_hub

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    import httpx

    from tests.support.managers import FakeTokenEndpoint

pytestmark = pytest.mark.integration

KEY = "loss:test"


@pytest.fixture(autouse=True)
def quick_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hubs look at their canary every 0.1 s instead of every 5 s."""
    monkeypatch.setattr(_redis_hub, "SWEEP", 0.1)


def login(token: str, account: str) -> AuthData:
    now = time.time()
    return AuthData(
        access_token=token,
        refresh_token=f"RT-{token}",
        account_id=account,
        expires_at=now + 3600,
        last_refresh=now,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A valkey-server of this test's own, without persistence (a restart loses all)."""
    running = RedisServer(tmp_path, extra_args=["--appendonly", "no"])
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def stored_before(server: RedisServer, auth: AuthData) -> None:
    """Store ``auth`` before any manager starts: their watchers' first look includes it,
    so the only change they can see is the one the test makes."""
    storage = RedisAuthStorage.from_url(server.url, key=KEY)
    await storage.write_auth(auth)
    await storage.aclose()


async def manager_on(
    server: RedisServer, http: httpx.AsyncClient
) -> tuple[TokenManager, RedisAuthStorage]:
    storage = RedisAuthStorage.from_url(server.url, key=KEY)
    manager = TokenManager(
        GENERIC,
        storage,
        http_client=http,
        retry=RetryPolicy(attempts=1),
        watch_interval=0.05,
    )
    await manager.__aenter__()
    return manager, storage


async def stored(raw: aioredis.Redis) -> AuthData | None:
    data = await raw.hget("{loss:test}", "data")
    return None if data is None else AuthData.from_dict(json.loads(data))


async def handled(manager: TokenManager, adopted: asyncio.Event) -> None:
    """Wait until the manager's watcher has handled a change and its task (a repair) ended."""
    await asyncio.wait_for(adopted.wait(), 30)  # a hang guard, not a measurement
    await settled(manager)


async def test_a_flush_is_repaired_by_the_managers_not_a_logout(
    server: RedisServer,
    raw: aioredis.Redis,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
) -> None:
    """FLUSHALL under two running managers: both keep serving, one writes the login back
    (no request to the provider), and a third process reading Redis finds it again."""
    alice = login("AT-alice", "alice")
    await stored_before(server, alice)
    managers = [await manager_on(server, http) for _ in range(2)]
    for manager, _ in managers:
        assert await manager.get_access_token() == "AT-alice"
    adopted = [watch_adoptions(manager) for manager, _ in managers]
    await raw.flushall()
    for (manager, _), event in zip(managers, adopted, strict=True):
        await handled(manager, event)
    assert await stored(raw) == alice
    for manager, storage in managers:
        assert await manager.get_access_token() == "AT-alice"
        assert not await storage.logged_out()
        await manager.aclose()
        await storage.aclose()
    assert endpoint.calls == 0


async def test_a_restart_without_persistence_is_repaired(
    server: RedisServer, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Redis restarts empty: the manager reconnects, finds its login gone without a logout
    mark, and writes it back; get_access_token() never failed."""
    alice = login("AT-alice", "alice")
    await stored_before(server, alice)
    manager, storage = await manager_on(server, http)
    assert await manager.get_access_token() == "AT-alice"
    adopted = watch_adoptions(manager)
    await asyncio.to_thread(server.stop)
    assert await manager.get_access_token() == "AT-alice"  # from memory meanwhile
    await asyncio.to_thread(server.start)
    await handled(manager, adopted)
    client = aioredis.Redis.from_url(server.url)
    try:
        assert await stored(client) == alice
    finally:
        await client.aclose()
    assert await manager.get_access_token() == "AT-alice"
    await manager.aclose()
    await storage.aclose()
    assert endpoint.calls == 0


async def test_a_real_logout_is_honoured_by_every_manager(
    server: RedisServer, http: httpx.AsyncClient
) -> None:
    """clear_auth() leaves the logout mark: a manager asked to refresh says no login is
    stored, and nobody writes the login back."""
    await stored_before(server, login("AT-alice", "alice"))
    manager, storage = await manager_on(server, http)
    assert await manager.get_access_token() == "AT-alice"
    other = RedisAuthStorage.from_url(server.url, key=KEY)
    await other.clear_auth()
    assert await other.logged_out()
    with pytest.raises(NotAuthenticatedError):
        await manager.refresh()
    assert await other.read_auth() is None
    await manager.aclose()
    await storage.aclose()
    await other.aclose()


async def test_a_relogin_whose_version_repeats_after_data_loss_is_noticed(
    server: RedisServer, raw: aioredis.Redis, http: httpx.AsyncClient
) -> None:
    """Data loss and, in the same instant, a new login of another account stored with the
    version number the old one had: the manager sees the change (the write id differs)
    and serves the new account."""
    await stored_before(server, login("AT-alice", "alice"))
    manager, storage = await manager_on(server, http)
    assert await raw.hget("{loss:test}", "version") == b"1"
    assert await manager.get_access_token() == "AT-alice"
    adopted = watch_adoptions(manager)
    bob = login("AT-bob", "bob")
    async with raw.pipeline(transaction=True) as pipe:  # both at once, for every watcher
        _ = pipe.flushall()
        _ = pipe.hset(
            "{loss:test}",
            mapping={"data": json.dumps(bob.to_dict()), "version": 1, "wid": "another-process"},
        )
        await pipe.execute()
    await asyncio.wait_for(adopted.wait(), 30)  # a hang guard, not a measurement
    assert await manager.get_access_token() == "AT-bob"
    await manager.aclose()
    await storage.aclose()
