"""RedisAuthStorage against a real valkey-server: fencing, lock ownership, outages, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis.asyncio as aioredis
import redis.exceptions

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
from vandamme_oauth.storage._redis_hub import close_hub, hub_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
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
    a = RedisAuthStorage.from_url(redis_server.url, key=key, client_name="host-a")
    b = RedisAuthStorage.from_url(redis_server.url, key=key, client_name="host-b")
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
        with pytest.raises(StorageError) as caught:
            await a.write_auth(LOGIN.replace(access_token="A-AT", refresh_token="A-RT"))
        assert str(caught.value) == (
            f"lost the refresh lock on {a.key!r} before writing (it expired); "
            "the newer login stored by another holder was kept"
        )
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
        with pytest.raises(StorageError) as caught:
            await a.write_auth(LOGIN.replace(access_token="A-AT"))
        assert str(caught.value) == (
            f"the login {a.key!r} changed while we refreshed; kept the newer one"
        )
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


async def test_unreachable_redis_is_a_storage_error_saying_what_failed(key: str) -> None:
    """Connection refused on every operation becomes one StorageError line that says what
    could not be done, to which login, and why (the Redis error stays its cause)."""
    storage = RedisAuthStorage.from_url("redis://127.0.0.1:9/0", key=key)

    async def lock() -> None:
        async with storage.lock():
            pass  # pragma: no cover

    calls = {
        "read": storage.read_auth,
        "write": lambda: storage.write_auth(LOGIN),
        "delete": storage.clear_auth_locked,
        "lock": lock,
        "read the logout mark of": storage.logged_out,
    }
    try:
        for doing, call in calls.items():
            with pytest.raises(StorageError) as caught:
                await call()
            verb = "read" if doing.startswith("read the") else doing
            prefix = f"cannot {verb} the login {key!r} in Redis: ConnectionError: "
            assert str(caught.value).startswith(prefix), str(caught.value)
            assert "\n" not in str(caught.value)
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    finally:
        await storage.aclose()


async def test_corrupt_value_is_a_storage_error(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """A value that is not our JSON raises StorageError and is left in place."""
    a, _ = pair
    await raw.hset(a.data_key, mapping={"data": "{oops", "version": 1})
    with pytest.raises(StorageError, match="unreadable") as caught:
        await a.read_auth()
    assert f"Redis key {a.data_key!r}" in str(caught.value)
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


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:6379", "'http'"),
        ("127.0.0.1:6379", "'127.0.0.1:6379'"),
        ("", "''"),
        ("mysql://x", "'mysql'"),
        ("redis+sentinel://h/0", "'redis+sentinel'"),
        ("http://h/?next=redis://h", "'http'"),
    ],
)
def test_from_url_refuses_what_is_not_a_redis_url(url: str, named: str) -> None:
    """Every bad URL is a ValidationError naming what was given and the accepted schemes."""
    with pytest.raises(ValidationError) as caught:
        RedisAuthStorage.from_url(url, key="k")
    assert str(caught.value) == (
        f"not a Redis URL: {named}; use redis://host:port/db, rediss:// (TLS) or unix:///path"
    )


def client_options(storage: RedisAuthStorage) -> dict[str, Any]:
    """The connection options of the client ``from_url()`` built."""
    client = storage._client
    assert isinstance(client, aioredis.Redis)
    return dict(client.connection_pool.connection_kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:9/0",
        "REDIS://127.0.0.1:9",
        "rediss://127.0.0.1:9",
        "unix:///x.sock",
        "redis://127.0.0.1:9/0?client_name=from-http://h",
    ],
)
async def test_from_url_accepts_every_redis_scheme_with_documented_defaults(url: str) -> None:
    """redis, rediss and unix URLs (any case) build a storage without connecting; the
    client gets a 10 s socket timeout and a 5 s connect timeout unless given others, and
    lock_ttl / lock_timeout go to the storage, not the client."""
    storage = RedisAuthStorage.from_url(url, key="k", lock_ttl=7, lock_timeout=9)
    options = client_options(storage)
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (10.0, 5.0)
    assert (storage.lock_ttl, storage.lock_timeout) == (7, 9)
    await storage.aclose()
    mine = RedisAuthStorage.from_url(url, key="k", socket_timeout=1.5, socket_connect_timeout=2)
    options = client_options(mine)
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 2)
    assert (mine.lock_ttl, mine.lock_timeout) == (30.0, 60.0)
    await mine.aclose()


def test_a_bad_url_or_an_empty_key_is_a_validation_error() -> None:
    """A URL redis-py cannot parse, and an empty key, are typed errors saying so."""
    with pytest.raises(ValidationError, match=r"^bad Redis URL: "):
        RedisAuthStorage.from_url("redis://127.0.0.1:notaport/0", key="k")
    with pytest.raises(ValidationError) as caught:
        RedisAuthStorage.from_url("redis://127.0.0.1:9/0", key="")
    assert str(caught.value) == "RedisAuthStorage needs a non-empty key"


async def test_a_client_we_were_given_is_not_closed_by_us(
    redis_server: RedisServer, key: str
) -> None:
    """aclose() closes only a client that from_url() built, never the caller's own."""

    class Client(aioredis.Redis):
        closes = 0

        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            self.closes += 1
            await super().aclose(close_connection_pool)

    client = Client.from_url(redis_server.url)
    assert isinstance(client, Client)
    storage = RedisAuthStorage(client, key=key)
    await storage.write_auth(LOGIN)
    await storage.aclose()
    assert client.closes == 0
    await client.aclose()
    built = RedisAuthStorage.from_url(redis_server.url, key=key)
    closed = built._client.aclose
    calls: list[bool] = []

    async def spy() -> None:
        calls.append(True)
        await closed()

    built._client.aclose = spy  # type: ignore[method-assign]
    await built.aclose()
    assert calls == [True]


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
        await cast("Any", pubsub).aclose()  # annotated only by newer redis-py releases


async def test_a_relogin_on_another_host_reaches_a_running_manager(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """Host B's re-login and logout reach host A's running manager (pub/sub)."""
    await relogin_and_logout_reach_a_manager(*pair)


async def test_storages_on_a_client_that_decodes_replies_watch_as_well(
    redis_server: RedisServer, key: str
) -> None:
    """An application's client made with ``decode_responses=True`` (its replies, pub/sub
    channels among them, are str): a re-login and a logout still reach the manager."""
    ours = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    theirs = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await relogin_and_logout_reach_a_manager(
            RedisAuthStorage(ours, key=key), RedisAuthStorage(theirs, key=key)
        )
    finally:
        await close_hub(ours)
        await ours.aclose()
        await theirs.aclose()


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
    a.lock_ttl = 1.5
    said = _Said("expired while held")
    logger = logging.getLogger("vandamme_oauth.storage._redis")
    logger.addHandler(said)
    try:
        async with a.lock():
            for _ in range(2):  # renewed, and renewed again
                lowest = await raw.pttl(a.lock_key)
                async with asyncio.timeout(10):  # a hang guard; each look is a round trip
                    while (ttl := await raw.pttl(a.lock_key)) <= lowest:
                        lowest = ttl
                assert 0 < ttl <= 1500  # to at most lock_ttl
            assert not said.event.is_set()
            await raw.set(a.lock_key, "someone-else", px=60_000)
            async with asyncio.timeout(10):
                await said.event.wait()
    finally:
        logger.removeHandler(said)
    assert await raw.get(a.lock_key) == b"someone-else"


async def lock_refused(storage: RedisAuthStorage) -> StorageError:
    """The StorageError with which ``storage.lock()`` refuses to be entered."""
    with pytest.raises(StorageError) as caught:
        async with storage.lock():
            pass  # pragma: no cover
    return caught.value


def count_refusals(storage: RedisAuthStorage) -> list[asyncio.Event]:
    """Events set at the first and the second time ``storage`` finds the lock taken."""
    refused = [asyncio.Event(), asyncio.Event()]
    attempt = storage._try_acquire

    async def spy(token: str, ttl_ms: int) -> bool:
        taken = await attempt(token, ttl_ms)
        if not taken:
            next((e for e in refused if not e.is_set()), refused[-1]).set()
        return taken

    storage._try_acquire = spy  # type: ignore[method-assign]
    return refused


async def test_a_lock_waiter_keeps_waiting_until_the_holder_releases(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """B finds the lock taken, and taken again at its next try: it is still outside. Only
    A's release lets it in."""
    a, b = pair
    refused = count_refusals(b)
    inside: list[str] = []

    async def waiter() -> None:
        async with b.lock():
            inside.append("b")

    async with a.lock():
        waiting = asyncio.create_task(waiter())
        entered_or_refused = asyncio.ensure_future(refused[1].wait())
        await asyncio.wait({waiting, entered_or_refused}, return_when=asyncio.FIRST_COMPLETED)
        assert refused[1].is_set()
        assert inside == []
    await waiting
    assert inside == ["b"]


async def test_a_lock_held_past_lock_timeout_is_a_storage_error_saying_so(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """B gives up after lock_timeout with one line naming the lock; A still holds it."""
    a, b = pair
    b.lock_timeout = 0.2
    async with a.lock():
        refusal = await lock_refused(b)
        assert str(refusal) == (
            f"the refresh lock {b.lock_key!r} stayed taken for over 0.2 s; "
            "is another host's refresh hanging?"
        )
        assert a._held.get() is not None


async def test_redis_lost_while_waiting_for_the_lock_is_a_storage_error(
    tmp_path: Path, key: str
) -> None:
    """Redis goes away while B waits for A's lock: B's lock() raises StorageError (it does
    not wait out lock_timeout, and does not get in)."""
    server = RedisServer(tmp_path)
    server.start()
    a = RedisAuthStorage.from_url(server.url, key=key)
    b = RedisAuthStorage.from_url(server.url, key=key, lock_timeout=600)
    refused = count_refusals(b)

    async def waiter() -> None:
        async with b.lock():
            pass  # pragma: no cover

    try:
        async with a.lock():
            waiting = asyncio.create_task(waiter())
            await refused[0].wait()
            server.stop()
            with pytest.raises(StorageError) as caught:
                await waiting
            prefix = f"cannot lock the login {key!r} in Redis: ConnectionError: "
            assert str(caught.value).startswith(prefix), str(caught.value)
    finally:
        await a.aclose()
        await b.aclose()
        server.stop()


async def test_writes_under_the_lock_are_fenced_against_what_the_holder_saw(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], key: str, redis_server: RedisServer
) -> None:
    """Under one lock on a login never stored: a first login can be written after reading
    nothing, and again (each write moves the fence along); a first write without any read
    also goes through (nothing was there to be newer)."""
    a, _ = pair
    first, second = LOGIN, LOGIN.replace(access_token="AT2")
    async with a.lock():
        assert await a.read_auth() is None
        await a.write_auth(first)
        await a.write_auth(second)
    assert await a.read_auth() == second
    blind = RedisAuthStorage.from_url(redis_server.url, key=f"{key}:blind")
    try:
        async with blind.lock():
            await blind.write_auth(first)
        assert await blind.read_auth() == first
    finally:
        await blind.aclose()


class Watched:
    """A spy on one storage's watcher: each look at the login's version, in order."""

    def __init__(self, storage: RedisAuthStorage) -> None:
        self.seen: list[str] = []
        self._recorded = asyncio.Event()
        version = storage._version

        async def spy_version() -> tuple[int, object] | None:
            value = await version()
            self.seen.append("version")
            self._recorded.set()
            return value

        storage._version = spy_version  # type: ignore[method-assign]

    async def until(
        self, done: Callable[[list[str]], bool], *, unless: asyncio.Future[None]
    ) -> None:
        """Wait until what the watcher did satisfies ``done``, or ``unless`` (a pending
        ``anext()``) is done: a yield that should not have happened fails at once."""
        while not done(self.seen) and not unless.done():
            self._recorded.clear()
            recorded = asyncio.ensure_future(self._recorded.wait())
            either: set[asyncio.Future[Any]] = {recorded, unless}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            recorded.cancel()


async def watcher_rhythm(
    a: RedisAuthStorage, b: RedisAuthStorage, kill_pubsub: Callable[[], Awaitable[object]]
) -> None:
    """The watcher's rhythm: its first look at ``version`` is a reference, and the
    confirmation of its subscription makes it look again (covering a write made in
    between), without a yield when nothing changed; a message makes it look and yield; a
    pub/sub connection killed by the server is replaced, and a change made meanwhile, whose
    message nobody heard, is found by the look the new subscription's confirmation makes;
    messages then reach it again, over one new connection (not one a read)."""
    watched = Watched(a)
    changes = a.changes(interval=0.01)
    pending = asyncio.ensure_future(anext(changes))
    try:
        async with asyncio.timeout(30):  # a hang guard, not a measurement
            # 1. The reference and the confirmation's look: nothing changed, no yield.
            await watched.until(lambda seen: seen.count("version") >= 2, unless=pending)
            assert not pending.done()
            # 2. An announced change: looked at and yielded.
            await b.write_auth(LOGIN)
            await pending
            # 3. The connection dies; a change nobody announces is found once it is back.
            pending = asyncio.ensure_future(anext(changes))
            hub = hub_for(a._client)
            opened = hub.connections
            assert opened == 1  # subscribing took one connection, no reconnection
            await kill_pubsub()
            await a._client.hincrby(a.data_key, "version", 1)
            await pending
            # 4. Messages reach the watcher again, on the one new connection.
            pending = asyncio.ensure_future(anext(changes))
            await b.write_auth(LOGIN.replace(access_token="AT-after-the-drop"))
            await pending
            assert hub.connections == opened + 1
    finally:
        pending.cancel()
        await asyncio.wait({pending})
        await changes.aclose()


async def test_the_watcher_looks_on_messages_and_after_reconnecting(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """See `watcher_rhythm`."""
    await watcher_rhythm(*pair, lambda: raw.client_kill_filter(_type="pubsub"))


async def test_a_cancelled_watcher_stops_and_leaves_its_channel(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """Cancelling a task that iterates ``changes()`` ends it wherever the cancellation
    lands; its channel is left, and with the last one the shared pub/sub connection stops
    reading."""
    a, _ = pair
    hub = hub_for(a._client)
    for turns in range(4):
        watched = Watched(a)
        watcher = asyncio.ensure_future(anext(a.changes(interval=0.05)))
        await watched.until(lambda seen: seen.count("version") >= 2, unless=watcher)
        assert hub.channels == 1
        for _ in range(turns):
            await asyncio.sleep(0)
        watcher.cancel()
        async with asyncio.timeout(10):  # a hang guard: a swallowed cancel never ends
            await asyncio.wait({watcher})
        assert watcher.cancelled()
        assert hub.channels == 0
        assert hub._reader is None


async def test_a_cancellation_swallowed_inside_a_command_still_stops_the_watcher(
    pair: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """redis-py may swallow a cancellation inside a command and answer as usual: a watcher
    cancelled while it looks at the version still stops, instead of waiting for a message
    for ever (a manager's aclose() would hang on it)."""
    a, b = pair
    listening, looking = asyncio.Event(), asyncio.Event()
    version = a._version
    looks = 0

    async def swallowing() -> tuple[int, object] | None:
        nonlocal looks
        looks += 1
        if looks == 2:  # the look its confirmed subscription makes: it listens
            listening.set()
        if looks == 3:  # the look after b's write
            looking.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            return None
        return await version()

    a._version = swallowing  # type: ignore[method-assign]
    watcher = asyncio.ensure_future(anext(a.changes()))
    async with asyncio.timeout(10):  # a hang guard
        await listening.wait()
        await b.write_auth(LOGIN)
        await looking.wait()
        watcher.cancel()
        await asyncio.wait({watcher})
    assert watcher.cancelled()


async def test_a_waiter_cancelled_leaves_the_holders_lock_alone(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """B is cancelled while it waits for A's lock: its clean-up release (for a SET that
    may have reached Redis) leaves A's lock in place and, having succeeded, leaves B
    nothing to reclaim."""
    a, b = pair
    refused = count_refusals(b)

    async def waiter() -> None:
        async with b.lock():
            pass  # pragma: no cover

    async with a.lock():
        holder = await raw.get(a.lock_key)
        waiting = asyncio.create_task(waiter())
        await refused[0].wait()
        waiting.cancel()
        await asyncio.wait({waiting})
        while b._background:
            await asyncio.wait(set(b._background))
        assert b._stale is None
        assert await raw.get(a.lock_key) == holder
    assert waiting.cancelled()


async def test_a_dropped_pubsub_connection_while_waiting_for_the_lock_is_survived(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """B waits for A's lock and the server kills every pub/sub connection: B keeps waiting
    (its short poll and the reconnected hub) and takes the lock once A releases it."""
    a, b = pair
    refused = count_refusals(b)
    acquired = asyncio.Event()

    async def waiter() -> None:
        async with b.lock():
            acquired.set()

    async with a.lock():
        waiting = asyncio.create_task(waiter())
        await refused[0].wait()
        await raw.client_kill_filter(_type="pubsub")
        refused[0].clear()
        await refused[0].wait()  # still trying after the drop
        assert not acquired.is_set()
    async with asyncio.timeout(10):  # a hang guard
        await waiting
    assert acquired.is_set()


async def test_a_failed_renewal_is_tried_again(
    pair: tuple[RedisAuthStorage, RedisAuthStorage], raw: aioredis.Redis
) -> None:
    """A renewal that fails (a Redis hiccup) does not end renewing: the next one, a third
    of lock_ttl later, extends the lock."""
    a, _ = pair
    a.lock_ttl = 1.5
    renew = a._renew
    failures: list[bool] = []

    async def flaky(**kwargs: Any) -> Any:
        if not failures:
            failures.append(True)
            raise redis.exceptions.ConnectionError("injected: a hiccup")
        return await renew(**kwargs)

    a._renew = flaky
    async with a.lock():
        lowest = await raw.pttl(a.lock_key)
        async with asyncio.timeout(10):  # a hang guard; each look is a round trip
            while (ttl := await raw.pttl(a.lock_key)) <= lowest:
                lowest = ttl
        assert failures == [True]
        assert 0 < ttl <= 1500
