"""RedisAuthStorage against a real valkey-server: fencing, lock ownership, outages, restarts."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from tests.conftest import FakeClock
from tests.storage.test_contract import LOGIN
from tests.support.redis_server import RedisServer
from vandamme_oauth import RedisAuthStorage, StorageError, TokenManager
from vandamme_oauth._provider import ProviderConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

PROVIDER = ProviderConfig(
    name="r",
    issuer="https://idp.example",
    client_id="c",
    authorization_endpoint="https://idp.example/a",
    token_endpoint="https://idp.example/t",
)


@pytest.fixture
async def key() -> str:
    return f"test:{uuid.uuid4().hex}"


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def pair(
    redis_server: RedisServer, key: str
) -> AsyncIterator[tuple[RedisAuthStorage, RedisAuthStorage]]:
    """Two hosts' storages for one login."""
    a = RedisAuthStorage.from_url(redis_server.url, key=key)
    b = RedisAuthStorage.from_url(redis_server.url, key=key)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_holder_whose_lock_expired_cannot_overwrite_a_newer_token(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """A's lock expires mid-refresh, B refreshes and writes; A's late write is refused."""
    a, b = pair
    await a.write_auth(LOGIN)
    newer = LOGIN.replace(access_token="B-AT", refresh_token="B-RT")
    async with a.lock():
        assert await a.read_auth() == LOGIN
        await raw.delete(a.lock_key)  # A's lock expires (a paused VM, a long GC)
        async with b.lock():
            assert await b.read_auth() == LOGIN
            await b.write_auth(newer)
        with pytest.raises(StorageError, match="lost the refresh lock"):
            await a.write_auth(LOGIN.replace(access_token="A-AT", refresh_token="A-RT"))
    assert await b.read_auth() == newer


async def test_fenced_write_refuses_when_a_login_happened_meanwhile(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """A new login written outside the lock while we refreshed is kept."""
    a, b = pair
    await a.write_auth(LOGIN)
    relogin = LOGIN.replace(access_token="NEW-LOGIN", refresh_token="NEW-RT")
    async with a.lock():
        await a.read_auth()
        await b.write_auth(relogin)  # e.g. `vandamme-oauth login` on another host
        with pytest.raises(StorageError, match="changed while we refreshed"):
            await a.write_auth(LOGIN.replace(access_token="A-AT"))
    assert await a.read_auth() == relogin


async def test_only_the_owner_releases_the_lock(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """Leaving lock() after losing it does not delete the new owner's lock."""
    a, _ = pair
    async with a.lock():
        await raw.set(a.lock_key, "someone-else")
    assert await raw.get(a.lock_key) == b"someone-else"


async def test_lock_has_a_ttl_and_is_released(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """The lock key carries a TTL (a dead holder cannot block forever) and is gone after."""
    a, _ = pair
    async with a.lock():
        ttl = await raw.pttl(a.lock_key)
        assert 0 < ttl <= a.lock_ttl * 1000
    assert await raw.exists(a.lock_key) == 0


async def test_unreachable_redis_is_a_storage_error(key: str) -> None:
    """Connection refused on every operation becomes StorageError naming the key."""
    storage = RedisAuthStorage.from_url("redis://127.0.0.1:9/0", key=key)
    try:
        with pytest.raises(StorageError, match=key):
            await storage.read_auth()
        with pytest.raises(StorageError):
            await storage.write_auth(LOGIN)
        with pytest.raises(StorageError):
            async with storage.lock():
                pass  # pragma: no cover
    finally:
        await storage.aclose()


async def test_corrupt_value_is_a_storage_error(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """A value that is not our JSON raises StorageError and is left in place."""
    a, _ = pair
    await raw.hset(a.data_key, mapping={"data": "{oops", "version": 1})
    with pytest.raises(StorageError, match="unreadable"):
        await a.read_auth()
    assert await raw.hget(a.data_key, "data") == b"{oops"


async def test_restart_gives_typed_errors_then_recovers_without_losing_the_login(
    tmp_path: Path, key: str
) -> None:
    """Redis restarted mid-run: a valid cached token keeps being served, storage calls raise
    StorageError, and after the restart the same login is there."""
    server = RedisServer(tmp_path)
    server.start()
    storage = RedisAuthStorage.from_url(server.url, key=key)
    clock = FakeClock(LOGIN.last_refresh)
    try:
        await storage.write_auth(LOGIN)
        async with TokenManager(PROVIDER, storage, clock=clock) as manager:
            assert await manager.get_access_token() == LOGIN.access_token
            server.stop()
            with pytest.raises(StorageError):
                await storage.read_auth()
            assert LOGIN.expires_at is not None
            clock.now = LOGIN.expires_at - 10  # inside the margin: would refresh, storage is down
            assert await manager.get_access_token() == LOGIN.access_token
            server.start()
            assert await storage.read_auth() == LOGIN
    finally:
        await storage.aclose()
        server.stop()
