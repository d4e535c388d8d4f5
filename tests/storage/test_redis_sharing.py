"""Many Redis logins in one process at the cost of one: storages made by ``from_url`` with
one URL share one client, storages on one client share one pub/sub connection, and a write
wakes only its own login's watcher. Counted on a real valkey-server (CLIENT LIST)."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from tests.storage.test_contract import LOGIN
from vandamme_oauth import RedisAuthStorage
from vandamme_oauth.storage import _redis_hub as redis_hub
from vandamme_oauth.storage._redis_hub import Hub, close_hub, hub_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

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


def reading(hub: Hub) -> tuple[asyncio.Task[None] | None, object]:
    """The hub's reader and connection now (a call: type checkers keep no narrowing)."""
    return hub._reader, hub._pubsub


async def test_a_retired_reader_stops_though_a_new_one_reads_the_new_connection(
    redis_server: RedisServer,
) -> None:
    """As above, but a new listener came before the retired reader looked: the hub has a
    new connection and a new reader, and the old reader stops rather than read alongside."""
    client = aioredis.Redis.from_url(redis_server.url)
    hub = hub_for(client)
    try:
        async with hub.listening(f"test:{uuid.uuid4()}"):
            reader, pubsub = hub._reader, hub._pubsub
            assert reader is not None
            assert pubsub is not None
            hub._reader, hub._pubsub = None, None  # retired, the cancellation lost
            async with hub.listening(f"test:{uuid.uuid4()}"):
                new_reader, new_pubsub = reading(hub)
                assert new_reader is not None
                assert new_reader is not reader
                assert new_pubsub is not None
                await asyncio.wait_for(asyncio.shield(reader), timeout=10)  # a hang guard
                assert not reader.cancelled()
                assert reader.exception() is None
            await pubsub.aclose()
    finally:
        await hub.aclose()
        await client.aclose()


async def test_a_confirmation_for_a_channel_left_meanwhile_is_ignored(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """A listener that leaves before its subscription is confirmed: the confirmation finds
    nobody to wake, and the hub goes on reading for the others."""
    client = aioredis.Redis.from_url(redis_server.url)
    hub = hub_for(client)
    staying = f"test:{uuid.uuid4()}"
    try:
        async with asyncio.timeout(10):  # a hang guard
            async with hub.listening(staying) as event:
                await event.wait()  # its own confirmation
                event.clear()
                async with hub.listening(f"test:{uuid.uuid4()}"):
                    pass  # left at once: its confirmation is read after
                await raw.publish(staying, "write")
                await event.wait()
                assert hub._reader is not None
                assert not hub._reader.done()
    finally:
        await hub.aclose()
        await client.aclose()


async def test_closing_a_shared_client_stops_a_watch_still_running(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """The last storage of a shared client closes while one of its logins is still being
    watched: the hub's reader stops and its connection closes (no error, nothing left on
    the server); the watch, cancelled afterwards, ends quietly."""
    name = f"closing-{uuid.uuid4().hex[:8]}"
    storage = RedisAuthStorage.from_url(redis_server.url, key=f"k:{uuid.uuid4()}", client_name=name)
    watchers = Watchers([storage])
    await watchers.until(lambda: watchers.looks[0] >= 2)
    hub = hub_for(storage._client)
    reader = hub._reader
    assert reader is not None
    await storage.aclose()
    assert reader.done()
    assert hub._pubsub is None
    await watchers.stop()
    assert all(task.cancelled() for task in watchers.tasks)
    async with asyncio.timeout(10):  # closing is asynchronous on the server's side
        while await connections(raw, name) != {"pubsub": 0, "normal": 0}:
            await raw.ping()


async def test_a_shared_client_lives_while_one_of_its_storages_is_open(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Three storages from one URL: closing two leaves the third working on the one client,
    which a fourth storage then shares; closing the last closes it, and a storage made
    afterwards gets a new client."""
    name = f"lives-{uuid.uuid4().hex[:8]}"
    storages = [
        RedisAuthStorage.from_url(redis_server.url, key=f"k:{uuid.uuid4()}", client_name=name)
        for _ in range(3)
    ]
    client = storages[0]._client
    for storage in storages[:2]:
        await storage.aclose()
    await storages[2].write_auth(LOGIN)
    assert await storages[2].read_auth() == LOGIN
    assert (await connections(raw, name))["normal"] == 1
    fourth = RedisAuthStorage.from_url(redis_server.url, key="k", client_name=name)
    assert fourth._client is client
    await fourth.aclose()
    await storages[2].aclose()
    async with asyncio.timeout(10):  # closing is asynchronous on the server's side
        while await connections(raw, name) != {"pubsub": 0, "normal": 0}:
            await raw.ping()
    again = RedisAuthStorage.from_url(redis_server.url, key="k", client_name=name)
    assert again._client is not client
    assert await again.read_auth() is None
    await again.aclose()


async def subscribers(raw: aioredis.Redis, channel: str) -> int:
    ((_, count),) = await raw.pubsub_numsub(channel)
    return int(count)


async def leaving_a_channel_unsubscribes_it(
    client: Any, subscribers: Callable[[str], Awaitable[int]], ping: Callable[[], Awaitable[object]]
) -> None:
    """While other channels are listened to, leaving one unsubscribes it on the server
    (its messages stop coming); the hub keeps its one connection and reader."""
    hub = hub_for(client)
    left, staying = f"{{test}}:{uuid.uuid4()}", f"{{test}}:{uuid.uuid4()}"
    try:
        async with asyncio.timeout(10):  # a hang guard
            async with hub.listening(staying) as kept:
                await kept.wait()
                async with hub.listening(left) as event:
                    await event.wait()
                    assert await subscribers(left) == 1
                assert hub.channels == 1
                while await subscribers(left) != 0:  # unsubscribed in the background
                    await ping()
                assert await subscribers(staying) == 1
                assert hub.connections == 1
                reader = hub._reader
                assert reader is not None
                assert reader.get_name() == "vandamme-oauth redis hub"
                assert not reader.done()
    finally:
        await hub.aclose()


async def test_a_channel_left_by_its_last_listener_is_unsubscribed(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """See `leaving_a_channel_unsubscribes_it`."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await leaving_a_channel_unsubscribes_it(
            client, lambda channel: subscribers(raw, channel), raw.ping
        )
    finally:
        await client.aclose()


async def test_listening_again_after_everyone_left_opens_one_new_connection(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """The last listener leaving closes the connection; the next one opens exactly one new
    connection and is subscribed on it."""
    name = f"again-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_server.url, client_name=name)
    hub = hub_for(client)
    channel = f"test:{uuid.uuid4()}"
    try:
        async with asyncio.timeout(10):  # a hang guard
            for turn in (1, 2):
                async with hub.listening(channel) as event:
                    await event.wait()
                    assert hub.connections == turn
                    assert await subscribers(raw, channel) == 1
                    event.clear()
                    await raw.publish(channel, "write")
                    await event.wait()
                while (await connections(raw, name))["pubsub"] != 0:
                    await raw.ping()
    finally:
        await close_hub(client)
        await client.aclose()


class Sweeps:
    """Counts the sweeps of a hub's reader."""

    def __init__(self, hub: Hub) -> None:
        self.count = 0
        self._swept = asyncio.Event()
        sweep = hub._sweep

        async def counted() -> None:
            await sweep()
            self.count += 1
            self._swept.set()

        hub._sweep = counted  # type: ignore[method-assign]

    async def after(self, count: int) -> None:
        """Wait until ``count`` more sweeps ended."""
        target = self.count + count
        while self.count < target:
            self._swept.clear()
            await self._swept.wait()


async def lost_data_wakes_every_listener(
    client: Any, other: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's canary key (with a TTL, so a dead process leaves none behind) is looked at
    on every sweep: sweeps that find it wake nobody; the sweep after it vanished (a
    FLUSHALL, a restart without persistence) wakes every listener. ``other``: another
    client of the same server or cluster."""
    monkeypatch.setattr(redis_hub, "SWEEP", 0.0)  # a sweep on each turn of the reader
    monkeypatch.setattr(redis_hub, "_READ", 0.01)
    hub = hub_for(client)
    sweeps = Sweeps(hub)
    try:
        async with asyncio.timeout(10):  # a hang guard
            async with (
                hub.listening(f"test:{uuid.uuid4()}") as one,
                hub.listening(f"test:{uuid.uuid4()}") as two,
            ):
                await one.wait()
                await two.wait()
                await sweeps.after(2)  # the first sweep may come before the confirmations
                one.clear()
                two.clear()
                await sweeps.after(3)
                assert not one.is_set()
                assert not two.is_set()
                assert 0 < await other.ttl(hub._canary) <= 3600
                await other.delete(hub._canary)
                await sweeps.after(2)  # a sweep under way may have set it before the delete
                assert one.is_set()
                assert two.is_set()
    finally:
        await hub.aclose()


async def test_lost_data_wakes_every_listener_and_nothing_else_does(
    redis_server: RedisServer, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """See `lost_data_wakes_every_listener`."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await lost_data_wakes_every_listener(client, raw, monkeypatch)
    finally:
        await client.aclose()


async def test_the_canary_is_looked_at_once_a_sweep_interval(
    redis_server: RedisServer, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two sweeps (an hour apart here) the reader only reads: messages keep coming
    and the canary is not looked at, so its loss wakes nobody yet."""
    monkeypatch.setattr(redis_hub, "SWEEP", 3600.0)
    monkeypatch.setattr(redis_hub, "_READ", 0.01)
    client = aioredis.Redis.from_url(redis_server.url)
    hub = hub_for(client)
    sweeps = Sweeps(hub)
    channel = f"test:{uuid.uuid4()}"
    try:
        async with asyncio.timeout(10):  # a hang guard
            async with hub.listening(channel) as one, hub.listening(f"test:{uuid.uuid4()}") as two:
                await one.wait()
                await two.wait()
                assert sweeps.count == 1  # the reader's first turn
                await raw.delete(hub._canary)
                two.clear()
                for _ in range(3):
                    one.clear()
                    await raw.publish(channel, "write")
                    await one.wait()
                assert sweeps.count == 1
                assert not two.is_set()
    finally:
        await hub.aclose()
        await client.aclose()


async def test_a_cancellation_turned_into_an_error_while_subscribing_still_cancels(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py may answer a cancellation inside a command with a ConnectionError: a
    watcher cancelled while it subscribes ends cancelled, instead of taking the error for
    a broken connection and listening on, uncancelled, for ever."""
    client = aioredis.Redis.from_url(redis_server.url)
    hub = hub_for(client)
    subscribing = asyncio.Event()
    make_pubsub = client.pubsub

    def pubsub() -> Any:
        made = make_pubsub()

        async def subscribe(*channels: str) -> None:
            subscribing.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise redis.exceptions.ConnectionError("Connection closed by server") from None

        made.subscribe = subscribe  # type: ignore[method-assign,assignment]
        return made

    monkeypatch.setattr(client, "pubsub", pubsub)

    async def watch() -> None:
        async with hub.listening(f"test:{uuid.uuid4()}") as event:
            await event.wait()

    watcher = asyncio.create_task(watch())
    try:
        await subscribing.wait()
        watcher.cancel()
        await asyncio.wait({watcher}, timeout=10)  # a hang guard
        assert watcher.cancelled()
        assert hub.channels == 0
    finally:
        watcher.cancel()
        await hub.aclose()
        await client.aclose()


def failing_pubsubs(client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, *methods: str) -> None:
    """The first pub/sub connection ``client`` makes raises ConnectionError from each of
    ``methods`` (after doing its work), as a connection the server just dropped does."""
    make_pubsub = client.pubsub
    made = 0

    def pubsub() -> Any:
        nonlocal made
        made += 1
        connection = make_pubsub()
        if made > 1:
            return connection
        for method in methods:
            original = getattr(connection, method)

            async def failing(*args: Any, original: Any = original) -> None:
                await original(*args)
                raise redis.exceptions.ConnectionError("Connection closed by server")

            setattr(connection, method, failing)
        return connection

    monkeypatch.setattr(client, "pubsub", pubsub)


async def test_a_subscription_that_failed_is_made_again_on_a_new_connection(
    redis_server: RedisServer, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subscribing fails (the connection broke): the reader opens a new connection and
    subscribes there, and its confirmation wakes the listener."""
    client = aioredis.Redis.from_url(redis_server.url)
    failing_pubsubs(client, monkeypatch, "subscribe")
    hub = hub_for(client)
    channel = f"test:{uuid.uuid4()}"
    try:
        async with asyncio.timeout(10), hub.listening(channel) as event:  # a hang guard
            await event.wait()
            assert hub.connections == 2
            assert await subscribers(raw, channel) == 1
    finally:
        await hub.aclose()
        await client.aclose()


async def test_leaving_over_a_broken_connection_is_quiet(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsubscribing and closing in the background over a connection that fails: no error
    reaches the event loop (nobody awaits those tasks to hear it)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    client = aioredis.Redis.from_url(redis_server.url)
    failing_pubsubs(client, monkeypatch, "unsubscribe", "aclose")
    hub = hub_for(client)
    try:
        async with asyncio.timeout(10):  # a hang guard
            async with hub.listening(f"test:{uuid.uuid4()}") as one:
                await one.wait()
                async with hub.listening(f"test:{uuid.uuid4()}") as two:
                    await two.wait()
            await close_hub(client)  # waits for what was left in the background
        gc.collect()  # a task whose exception nobody retrieved reports it when collected
        assert errors == []
    finally:
        loop.set_exception_handler(None)
        await client.aclose()
