"""Many Redis logins in one process at the cost of one: storages made by ``from_url`` with
one URL share one client, storages on one client share one pub/sub connection, and a write
wakes only its own login's watcher. Counted on a real valkey-server (CLIENT LIST)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from tests.storage.test_contract import LOGIN
from vandamme_oauth import RedisAuthStorage
from vandamme_oauth.storage._redis_hub import hub_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from harness.redis_server import RedisServer

LOGINS = 40


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def connections(raw: aioredis.Redis, name: str) -> dict[str, int]:
    """The server's connections named ``name``, by kind."""
    found = {"pubsub": 0, "normal": 0}
    for kind in found:
        listed: list[dict[str, Any]] = await raw.client_list(_type=kind)
        found[kind] = sum(1 for client in listed if client.get("name") == name)
    return found


class Watchers:
    """Iterates ``changes()`` of many storages; counts their yields and version looks."""

    def __init__(self, storages: list[RedisAuthStorage]) -> None:
        self.yields = [0] * len(storages)
        self.looks = [0] * len(storages)
        self.changed = asyncio.Event()
        self.tasks = [asyncio.create_task(self._watch(i, s)) for i, s in enumerate(storages)]

    async def _watch(self, i: int, storage: RedisAuthStorage) -> None:
        version = storage._version

        async def counted() -> tuple[int, object] | None:
            self.looks[i] += 1
            self.changed.set()
            return await version()

        storage._version = counted  # type: ignore[method-assign]
        async for _ in storage.changes():
            self.yields[i] += 1
            self.changed.set()

    async def until(self, done: Any) -> None:
        async with asyncio.timeout(30):  # a hang guard, not a measurement
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.wait(self.tasks)


async def test_logins_from_one_url_share_one_client_and_one_pubsub_connection(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Forty storages from one URL, each watched: one client, one pub/sub connection on
    the server; another host's write to one login wakes that login's watcher only; closing
    them all closes the shared connections."""
    name = f"sharing-{uuid.uuid4().hex[:8]}"
    keys = [f"share:{uuid.uuid4().hex}" for _ in range(LOGINS)]
    storages = [RedisAuthStorage.from_url(redis_server.url, key=k, client_name=name) for k in keys]
    assert len({id(s._client) for s in storages}) == 1
    watchers = Watchers(storages)
    # Each watcher's reference look and the look its confirmed subscription makes.
    await watchers.until(lambda: min(watchers.looks) >= 2)
    assert await connections(raw, name) == {"pubsub": 1, "normal": 1}
    other = RedisAuthStorage.from_url(redis_server.url, key=keys[7], client_name="other-host")
    await other.write_auth(LOGIN)
    await watchers.until(lambda: watchers.yields[7] == 1)
    await other.aclose()
    other = RedisAuthStorage.from_url(redis_server.url, key=keys[8], client_name="other-host")
    await other.write_auth(LOGIN)  # a second write: the hub has dispatched the first
    await watchers.until(lambda: watchers.yields[8] == 1)
    await other.aclose()
    assert [i for i, n in enumerate(watchers.yields) if n] == [7, 8]
    assert [i for i, n in enumerate(watchers.looks) if n > 2] == [7, 8]
    await watchers.stop()
    for storage in storages:
        await storage.aclose()
    async with asyncio.timeout(10):  # closing is asynchronous on the server's side
        while await connections(raw, name) != {"pubsub": 0, "normal": 0}:
            await raw.ping()  # one round trip between two looks


async def test_logins_on_one_client_share_its_pubsub_connection(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Storages built on one client object you made: one pub/sub connection among them,
    whatever their number, and the client stays open for you."""
    name = f"given-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_server.url, client_name=name)
    storages = [RedisAuthStorage(client, key=f"given:{uuid.uuid4().hex}") for _ in range(10)]
    watchers = Watchers(storages)
    await watchers.until(lambda: min(watchers.looks) >= 2)
    assert (await connections(raw, name))["pubsub"] == 1
    assert hub_for(client).channels == 10
    await watchers.stop()
    assert hub_for(client).channels == 0
    for storage in storages:
        await storage.aclose()
    assert await client.ping()
    await client.aclose()


async def test_different_options_or_urls_get_different_clients(
    redis_server: RedisServer,
) -> None:
    """Sharing is by URL and options: another database or client name is another client."""
    a = RedisAuthStorage.from_url(redis_server.url, key="k1", client_name="one")
    b = RedisAuthStorage.from_url(redis_server.url, key="k2", client_name="one")
    c = RedisAuthStorage.from_url(redis_server.url, key="k3", client_name="two")
    d = RedisAuthStorage.from_url(redis_server.url + "/1", key="k4", client_name="one")
    assert a._client is b._client
    assert len({id(s._client) for s in (a, c, d)}) == 3
    for storage in (a, b, c, d):
        await storage.aclose()


async def test_a_reader_whose_cancellation_was_lost_stops_when_retired(
    redis_server: RedisServer,
) -> None:
    """The hub retired its reader (the last listener left) but the cancellation never
    reached it, as when redis-py swallows one: the reader notices it is no longer the hub's
    and ends quietly, instead of reading from a connection that is gone."""
    client = aioredis.Redis.from_url(redis_server.url)
    hub = hub_for(client)
    try:
        async with hub.listening(f"test:{uuid.uuid4()}"):
            reader = hub._reader
            assert reader is not None
            pubsub = hub._pubsub
            # What _unsubscribe_later does, less the cancellation that got lost:
            hub._reader, hub._pubsub = None, None
            await asyncio.wait_for(asyncio.shield(reader), timeout=10)
            assert reader.done()
            assert not reader.cancelled()
            assert reader.exception() is None
            assert pubsub is not None
            await pubsub.aclose()
    finally:
        await hub.aclose()
        await client.aclose()
