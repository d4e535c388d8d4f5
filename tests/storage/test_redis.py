"""RedisAuthStorage against a real valkey-server: fencing, lock ownership, outages, restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from harness.redis_server import RedisServer
from tests.conftest import FakeClock
from tests.storage.test_contract import LOGIN, PROVIDER, relogin_and_logout_reach_a_manager
from vandamme_oauth import (
    RedisAuthStorage,
    StorageError,
    TokenManager,
    ValidationError,
)
from vandamme_oauth.storage import _redis as redis_storage
from vandamme_oauth.storage._redis import login_keys

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


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
    await fencing_keeps_a_relogin(*pair)


async def fencing_keeps_a_relogin(a: RedisAuthStorage, b: RedisAuthStorage) -> None:
    """A holds the lock and has read; B stores a new login (e.g. `vandamme-oauth login` on
    another host); A's write is refused and B's login stays."""
    await a.write_auth(LOGIN)
    relogin = LOGIN.replace(access_token="NEW-LOGIN", refresh_token="NEW-RT")
    async with a.lock():
        await a.read_auth()
        await b.write_auth(relogin)
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


def test_keys_of_one_login_share_a_hash_tag() -> None:
    """Data, lock and channel hash to one cluster slot; a key with a tag keeps it."""
    assert login_keys("vandamme:chatgpt") == (
        "{vandamme:chatgpt}",
        "{vandamme:chatgpt}:lock",
        "{vandamme:chatgpt}:changes",
    )
    assert login_keys("app:{acct-7}:login") == (
        "app:{acct-7}:login",
        "app:{acct-7}:login:lock",
        "app:{acct-7}:login:changes",
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "mysql://x"])
def test_from_url_refuses_what_is_not_a_redis_url(url: str) -> None:
    """Every bad URL is a ValidationError naming the accepted schemes."""
    with pytest.raises(ValidationError, match="redis://"):
        RedisAuthStorage.from_url(url, key="k")


async def test_cancelled_lock_users_never_leave_the_lock_taken(
    redis_server: RedisServer, key: str, raw: aioredis.Redis
) -> None:
    """Tasks sharing one storage object, cancelled at random points of lock() (the SET in
    flight, holding, releasing), 100 rounds: afterwards the lock is free or ours to
    reclaim, so the next lock() takes it at once."""
    storage = RedisAuthStorage.from_url(redis_server.url, key=key, lock_timeout=5)
    rng = random.Random(1201)

    async def user() -> None:
        async with storage.lock():
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)

    try:
        for _ in range(100):
            tasks = [asyncio.create_task(user()) for _ in range(3)]
            for task in tasks:
                for _ in range(rng.randrange(12)):
                    await asyncio.sleep(0)
                task.cancel()
            await asyncio.wait(tasks)
            while storage._background:
                await asyncio.wait(set(storage._background))
            holder = await raw.get(storage.lock_key)
            assert holder is None or holder == (storage._stale or "").encode()
        async with storage.lock():
            assert await raw.exists(storage.lock_key) == 1
        assert await raw.exists(storage.lock_key) == 0
    finally:
        await storage.aclose()


async def test_release_that_failed_in_a_restart_is_reclaimed_not_waited_out(
    tmp_path: Path, key: str
) -> None:
    """The release fails because Redis is down; Redis comes back with the lock key (it
    persists); our next lock() takes it over at once instead of waiting out its TTL."""
    server = RedisServer(tmp_path)
    server.start()
    storage = RedisAuthStorage.from_url(server.url, key=key, lock_ttl=600, lock_timeout=2)
    try:
        async with storage.lock():
            server.stop()
        assert storage._stale is not None
        server.start()
        async with storage.lock():
            pass
        assert storage._stale is None
    finally:
        await storage.aclose()
        server.stop()


async def test_writes_clears_and_releases_are_published(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """Watchers and lock waiters are woken by messages on the login's channel."""
    a, _ = pair
    pubsub = raw.pubsub()
    await pubsub.subscribe(a.channel)
    try:
        await a.write_auth(LOGIN)
        async with a.lock():
            pass
        await a.clear_auth()
        seen: list[bytes] = []
        async with asyncio.timeout(10):  # a hang guard, not a measurement
            while len(seen) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:  # None: a subscribe confirmation, or nothing yet
                    seen.append(message["data"])
        assert seen == [b"write", b"release", b"clear"]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_relogin_on_another_host_reaches_a_running_manager(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """Host B's re-login and logout reach host A's running manager (pub/sub)."""
    await relogin_and_logout_reach_a_manager(*pair)


async def test_a_lock_waiter_is_woken_by_the_release_not_by_polling(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fallback poll stretched to a minute, a waiter on another host still gets
    the lock as soon as the holder releases it: the release message wakes it."""
    monkeypatch.setattr(redis_storage, "_WAKE_FALLBACK", 60.0)
    await waiter_is_woken_by_the_release(*pair)


async def waiter_is_woken_by_the_release(a: RedisAuthStorage, b: RedisAuthStorage) -> None:
    """A holds the lock, B waits for it; A releases: B gets it at once (within a hang guard
    far below the stretched fallback poll)."""
    entered, leave = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with a.lock():
            entered.set()
            await leave.wait()

    async def waiter() -> None:
        async with b.lock():
            pass

    held = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    leave.set()
    await held
    async with asyncio.timeout(10):  # a hang guard: polling alone would take 60 s
        await waiting


class _Said(logging.Handler):
    """Sets ``event`` when a record containing ``words`` is logged."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


async def test_a_held_lock_is_renewed_and_a_lost_one_is_noticed(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """While held, the lock's TTL is renewed (every third of lock_ttl); if the key was
    taken over meanwhile, the holder stops renewing and says so."""
    a, _ = pair
    a.lock_ttl = 0.3
    said = _Said("expired while held")
    logger = logging.getLogger("vandamme_oauth.storage._redis")
    logger.addHandler(said)
    try:
        async with a.lock():
            lowest = await raw.pttl(a.lock_key)
            async with asyncio.timeout(10):  # a hang guard; each look is a Redis round trip
                while (ttl := await raw.pttl(a.lock_key)) <= lowest:
                    lowest = ttl
            assert 0 < ttl <= 300  # renewed, to at most lock_ttl
            await raw.set(a.lock_key, "someone-else", px=60_000)
            async with asyncio.timeout(10):
                await said.event.wait()
    finally:
        logger.removeHandler(said)
    assert await raw.get(a.lock_key) == b"someone-else"
