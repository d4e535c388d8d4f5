"""What the Redis logins of one process share: one client per URL (storages made by
``RedisAuthStorage.from_url`` with the same URL and options in one event loop) and one
pub/sub connection per client (per cluster node for sharded channels), whatever the number
of logins. A message on one login's channel wakes only that login's listeners.

Data loss publishes nothing (``FLUSHALL``; a restart without persistence also drops the
connection, which the hub notices itself): every `SWEEP` seconds the hub refreshes a canary
key of its own with ``SET ... GET``, and wakes every listener when the canary was gone. On a
cluster the canary lives on one shard, so a flush of other shards alone goes unseen there
until the logins' next refresh (which repairs it under the lock).

Delivery: Redis delivers every message published after a ``SUBSCRIBE`` was answered, for as
long as the connection lives. So the hub wakes a channel's listeners on each of its messages,
and also when its subscription is confirmed, first or again after a reconnection: listeners
then read the login's version, which covers whatever was published while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import redis.exceptions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Hub", "hub_for", "release_client", "shared_client"]

log = logging.getLogger(__name__)

#: Connections of a client made by ``from_url``, unless ``max_connections`` says otherwise:
#: the shared pub/sub connection and one for commands (each command is one short round trip;
#: nothing blocks a connection while it waits).
MAX_CONNECTIONS = 2
_BACKGROUND: set[asyncio.Task[None]] = set()
_RETRY = 0.5  # seconds between reconnection attempts of a broken pub/sub connection
_READ = 1.0  # seconds one read waits for a message (cancellation is checked in between)
#: Seconds between two looks at the canary key (what tells a flush or a restart).
SWEEP = 5.0
_CANARY_TTL = 3600  # seconds: a canary outlives a pause of its process, not the process


async def _close(pubsub: Any) -> None:
    """Close a pub/sub connection (``Any``: redis-py typed ``PubSub.aclose`` late)."""
    with contextlib.suppress(redis.exceptions.RedisError):
        await pubsub.aclose()


async def _quietly(call: Any) -> None:
    with contextlib.suppress(redis.exceptions.RedisError):
        await call


def _in_background(coroutine: Any) -> None:
    """Run ``coroutine`` in a task nobody waits for (kept referenced until it ends)."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _cancelled() -> bool:
    """redis-py may turn a cancellation into a connection error: a loop that catches
    ``RedisError`` to carry on must ask."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Hub:
    """One pub/sub connection of one client, shared by every listener of every channel."""

    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster) -> None:
        self._client = client
        self._sharded = isinstance(client, aioredis.RedisCluster)
        self._listeners: dict[str, set[asyncio.Event]] = {}
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._broken = False
        self._canary = f"vandamme-oauth:canary:{secrets.token_hex(8)}"
        self._canary_set = False
        #: Pub/sub connections opened so far (a reconnection opens one more).
        self.connections = 0

    @property
    def channels(self) -> int:
        """How many channels have at least one listener."""
        return len(self._listeners)

    @contextlib.asynccontextmanager
    async def listening(self, channel: str) -> AsyncIterator[asyncio.Event]:
        """An event set on each message of ``channel`` and when its subscription is
        confirmed (Redis down: once it is back), for as long as the block runs."""
        event = asyncio.Event()
        listeners = self._listeners.setdefault(channel, set())
        listeners.add(event)
        try:
            if len(listeners) == 1:
                await self._subscribe(channel)
            yield event
        finally:
            listeners.discard(event)
            if not listeners and self._listeners.get(channel) is listeners:
                del self._listeners[channel]
                self._unsubscribe_later(channel)

    async def _subscribe(self, channel: str) -> None:
        if self._pubsub is None:
            self._pubsub = self._client.pubsub()
            self.connections += 1
        if not self._broken:
            try:
                if self._sharded:
                    await self._pubsub.ssubscribe(channel)
                else:
                    await self._pubsub.subscribe(channel)
            except redis.exceptions.RedisError as exc:
                if _cancelled():
                    raise asyncio.CancelledError from None
                log.debug("subscribing to a Redis channel failed: %s", type(exc).__name__)
                self._broken = True  # the reader connects again and subscribes everything
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="vandamme-oauth redis hub")

    def _unsubscribe_later(self, channel: str) -> None:
        """Leave ``channel`` in the background; with the last channel, stop reading and
        close the connection."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        if not self._listeners:
            reader, self._reader, self._pubsub = self._reader, None, None
            self._broken = False
            if reader is not None:
                reader.cancel()
            _in_background(_close(pubsub))
        elif not self._broken:
            leave = pubsub.sunsubscribe if self._sharded else pubsub.unsubscribe
            _in_background(_quietly(leave(channel)))

    async def aclose(self) -> None:
        """Stop reading and close the pub/sub connection (the client is closing)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader})
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close(pubsub)

    async def _reconnect(self) -> None:
        """A new connection subscribed to every channel listened to; each listener is
        woken (by the confirmations) to look at its login's version."""
        old = self._pubsub
        new = self._pubsub = self._client.pubsub()
        self.connections += 1
        if old is not None:
            await _close(old)
        if self._pubsub is not new:  # the hub retired meanwhile and closes ``new`` itself
            return
        channels = list(self._listeners)
        if channels and self._sharded:
            await new.ssubscribe(*channels)
        elif channels:
            await new.subscribe(*channels)
        self._broken = False

    async def _sweep(self) -> None:
        """Wake every listener if the server lost its data since the last sweep (a
        FLUSHALL, or a restart without persistence, publish nothing): the canary key this
        hub keeps alive is gone."""
        try:
            alive = await self._client.set(self._canary, "1", ex=_CANARY_TTL, get=True)
        except redis.exceptions.RedisError:
            if _cancelled():
                raise asyncio.CancelledError from None
            return  # the reader notices a broken connection itself
        if alive is None and self._canary_set:
            log.debug("Redis lost its data; every login looks at its version")
            for listeners in list(self._listeners.values()):
                for event in listeners:
                    event.set()
        self._canary_set = True

    def _retired(self, me: asyncio.Task[Any] | None) -> bool:
        """Whether the reader ``me`` must stop (it is cancelled: raises CancelledError), or
        is no longer the hub's reader: its last listener left, or the hub closed. That
        covers a cancellation lost inside redis-py (on Python 3.11 a timeout expiring with
        it can swallow it), which would otherwise read from a connection already gone."""
        if _cancelled():
            raise asyncio.CancelledError
        return self._reader is not me or self._pubsub is None

    async def _read(self) -> None:
        me = asyncio.current_task()
        next_sweep = time.monotonic()
        while True:
            if time.monotonic() >= next_sweep:
                await self._sweep()
                next_sweep = time.monotonic() + SWEEP
            if self._retired(me):
                return
            try:
                if self._broken:
                    await self._reconnect()
                    if self._retired(me):
                        return
                pubsub = self._pubsub
                assert pubsub is not None  # noqa: S101 - checked by _retired(), no await since
                if self._sharded:
                    message = await pubsub.get_sharded_message(timeout=_READ)
                else:
                    message = await pubsub.get_message(timeout=_READ)
            except redis.exceptions.RedisError as exc:
                if _cancelled():
                    raise asyncio.CancelledError from None
                if not self._broken:
                    log.debug("the Redis pub/sub connection failed: %s", type(exc).__name__)
                self._broken = True
                await asyncio.sleep(_RETRY)
                continue
            if self._retired(me):
                return
            if isinstance(message, dict):
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        """A message or a subscription's confirmation wakes the channel's listeners."""
        if message.get("type") not in {"message", "smessage", "subscribe", "ssubscribe"}:
            return
        for event in self._listeners.get(_text(message.get("channel")), ()):
            event.set()


_HUBS: weakref.WeakKeyDictionary[Any, Hub] = weakref.WeakKeyDictionary()


def hub_for(client: aioredis.Redis | aioredis.RedisCluster) -> Hub:
    """The pub/sub hub of ``client`` (one per client object)."""
    found = _HUBS.get(client)
    if found is None:
        found = _HUBS[client] = Hub(client)
    return found


async def close_hub(client: aioredis.Redis | aioredis.RedisCluster) -> None:
    """Close ``client``'s hub and what it closes in the background, before the client."""
    hub = _HUBS.pop(client, None)
    if hub is not None:
        await hub.aclose()
    if _BACKGROUND:
        await asyncio.wait(set(_BACKGROUND))


class _Shared:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.users = 0


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(url: str, options: dict[str, Any]) -> tuple[aioredis.Redis, bool]:
    """A client for ``url``: the one this event loop already has for that URL and those
    options, or a new one (shared from now on when a loop runs). Returns the client and
    whether it is shared (then `release_client` closes it with its last user)."""
    options = {"max_connections": MAX_CONNECTIONS, **options}
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop yet: a client of its own, bound to the loop that uses it
        return _client(url, options), False
    key = repr((url, sorted(options.items())))
    clients = _CLIENTS.setdefault(loop, {})
    shared = clients.get(key)
    if shared is None:
        shared = clients[key] = _Shared(_client(url, options))
    shared.users += 1
    return shared.client, True


def _client(url: str, options: dict[str, Any]) -> aioredis.Redis:
    """A client whose pool holds at most ``max_connections`` connections (the pub/sub
    connection among them); a caller beyond waits for one to be free."""
    return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(url, **options))


async def release_client(client: aioredis.Redis | aioredis.RedisCluster) -> None:
    """One user fewer of a shared client; the last one closes it."""
    clients = _CLIENTS.get(asyncio.get_running_loop(), {})
    for key, shared in list(clients.items()):
        if shared.client is client:
            shared.users -= 1
            if shared.users <= 0:
                del clients[key]
                await close_hub(client)
                await client.aclose()
            return
    await close_hub(client)  # pragma: no cover - a shared client used from another loop
    await client.aclose()  # pragma: no cover
