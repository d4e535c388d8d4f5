"""RedisAuthStorage: one login shared by many hosts through Redis or Valkey (extra ``redis``).

Layout, for ``key="vandamme:chatgpt"``. Every key of one login shares the hash tag
``{vandamme:chatgpt}``, so each script runs on one slot of a Redis Cluster (a key that
already has a ``{tag}`` keeps it):

- ``{vandamme:chatgpt}``          a hash: ``data`` (the versioned JSON of
  [`AuthData`][vandamme_oauth.AuthData]), ``version`` (an integer bumped by every write and
  every clear), ``wid`` (a random id of the last write or clear: the version restarts after
  data loss, the id does not repeat) and ``out`` (the logout mark, set by a clear and removed
  by a write: a login that vanished without it was lost, not logged out);
- ``{vandamme:chatgpt}:lock``     the refresh lock: ``SET NX PX`` with a random token,
  renewed while held, released only by its owner (compare-and-delete in Lua);
- ``{vandamme:chatgpt}:changes``  a pub/sub channel: every write, clear and release
  publishes on it (from the same Lua script), so running managers see a new login at once
  and lock waiters are woken by the holder instead of polling. On a Redis Cluster client it
  is a sharded channel (``SPUBLISH``/``SSUBSCRIBE``, Redis 7+) on the login's own slot.

Writes made while holding the lock are fenced: one Lua script checks that the lock still
holds our token *and* that ``version`` is the one we read under the lock, so a holder whose
lock expired (a paused VM, a long GC) can never overwrite a newer token. Writes outside the
lock (a new login) are unconditional. Waiters subscribe to the channel and wake on the
holder's release; a short poll (100 ms) covers lost messages. A lock token whose release
failed (Redis restarting) or whose ``SET`` was cut off by a cancellation is remembered and
reclaimed by the next ``lock()``, so we never wait out our own lock's TTL. Every Redis
failure becomes a [`StorageError`][vandamme_oauth.StorageError].
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import redis.exceptions

from .._exceptions import StorageError, ValidationError
from ._base import (
    AuthData,
    ConditionalWrite,
    KnowsLogouts,
    LockedClear,
    Watchable,
    parse_stored,
)
from ._redis_hub import close_hub, hub_for, release_client, shared_client

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

__all__ = ["RedisAuthStorage"]

log = logging.getLogger(__name__)

# KEYS[1] data hash, KEYS[2] lock; ARGV[1] channel (a channel is not a key).
# Every write and clear sets a random write id ('wid'): after data loss the version counter
# starts again, and a new login with a repeated version is still told apart by its wid. A
# clear leaves the logout mark ('out'); a write removes it.
_FENCED_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[3]) then return -2 end
redis.call('HSET', KEYS[1], 'data', ARGV[4], 'version', version + 1, 'wid', ARGV[5])
redis.call('HDEL', KEYS[1], 'out')
redis.call('PUBLISH', ARGV[1], 'write')
return version + 1
"""
_WRITE = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version, 'wid', ARGV[3])
redis.call('HDEL', KEYS[1], 'out')
redis.call('PUBLISH', ARGV[1], 'write')
return version
"""
_CLEAR = """
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
redis.call('HDEL', KEYS[1], 'data')
redis.call('HSET', KEYS[1], 'version', version, 'wid', ARGV[2], 'out', '1')
redis.call('PUBLISH', ARGV[1], 'clear')
return version
"""
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], 'release')
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


_HASH_TAG = re.compile(r"\{[^}]+\}")
_WAKE_FALLBACK = 0.1  # seconds a lock waiter waits for a message before trying again


def login_keys(key: str) -> tuple[str, str, str]:
    """The data key, lock key and channel of the login ``key``, sharing one hash tag."""
    base = key if _HASH_TAG.search(key) else "{" + key + "}"
    return base, f"{base}:lock", f"{base}:changes"


def _check_cancelled() -> None:
    """Re-raise a cancellation that redis-py turned into a connection error: code that
    catches ``RedisError`` to carry on must not swallow its task's cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Held:
    """What the current task holds: the lock token and the version it last read."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.version = 0


class RedisAuthStorage(Watchable, ConditionalWrite, LockedClear, KnowsLogouts):
    """An [`AuthStorage`][vandamme_oauth.AuthStorage] in Redis/Valkey, safe to share across
    processes and hosts.

    Args:
        client: A ``redis.asyncio`` client you built: ``Redis``, ``RedisCluster``, or a
            Sentinel's ``master_for(...)`` (closed by `aclose()` only if we made it).
        key: The login's key; use one per provider/account (e.g. ``"vandamme:chatgpt"``).
        lock_ttl: Seconds the refresh lock lives without renewal (renewed every third).
        lock_timeout: Seconds ``lock()`` waits for another holder before raising.
    """

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        key: str,
        lock_ttl: float = 30.0,
        lock_timeout: float = 60.0,
    ) -> None:
        if not key:
            raise ValidationError("RedisAuthStorage needs a non-empty key")
        self._client = client
        self._owns_client = False
        self._shared_client = False
        self.key = key
        self.data_key, self.lock_key, self.channel = login_keys(key)
        self.lock_ttl = lock_ttl
        self.lock_timeout = lock_timeout
        self._held: ContextVar[_Held | None] = ContextVar(
            f"vandamme-redis-{id(self)}", default=None
        )
        self._local_lock = asyncio.Lock()
        self._stale: str | None = None  # a lock token of ours whose release is uncertain
        self._background: set[asyncio.Task[Any]] = set()
        # On a cluster, sharded pub/sub: the channel shares the login's slot, so messages
        # stay on its shard instead of crossing the whole cluster bus.
        self._sharded = isinstance(client, aioredis.RedisCluster)

        def script(text: str) -> Any:
            publish = "'SPUBLISH'" if self._sharded else "'PUBLISH'"
            return client.register_script(text.replace("'PUBLISH'", publish))

        self._fenced_write = script(_FENCED_WRITE)
        self._write = script(_WRITE)
        self._clear = script(_CLEAR)
        self._acquire_script = script(_ACQUIRE)
        self._release = script(_RELEASE)
        self._renew = script(_RENEW)

    @classmethod
    def from_url(cls, url: str, *, key: str, **kwargs: Any) -> RedisAuthStorage:
        """Build from a URL such as ``redis://127.0.0.1:6379/0`` (``rediss://`` for TLS,
        ``unix://`` for a socket).

        Keyword arguments other than ``lock_ttl`` / ``lock_timeout`` go to the client's
        connection pool. Storages made with the same URL and arguments in one event loop
        share one client: at most ``max_connections`` connections (default 2: one shared
        pub/sub connection for every login's notifications, one for commands), closed
        with the last of them by `aclose()`.

        Raises:
            ValidationError: the URL is not a Redis URL.
        """
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValidationError(
                f"not a Redis URL: {url.partition('://')[0] or url!r}; "
                "use redis://host:port/db, rediss:// (TLS) or unix:///path"
            )
        options = {k: kwargs.pop(k) for k in ("lock_ttl", "lock_timeout") if k in kwargs}
        kwargs.setdefault("socket_timeout", 10.0)
        kwargs.setdefault("socket_connect_timeout", 5.0)
        try:
            client, shared = shared_client(url, kwargs)
        except ValueError as exc:
            raise ValidationError(f"bad Redis URL: {exc}") from None
        storage = cls(client, key=key, **options)
        storage._owns_client = True
        storage._shared_client = shared
        return storage

    def __repr__(self) -> str:
        return f"RedisAuthStorage(key={self.key!r})"

    async def aclose(self) -> None:
        """Finish background releases and close the client if `from_url()` created it
        (a client shared by several storages closes with the last of them)."""
        if self._background:
            await asyncio.wait(set(self._background))
        if self._owns_client:
            self._owns_client = False
            if self._shared_client:
                await release_client(self._client)
            else:
                await close_hub(self._client)
                await self._client.aclose()

    def _error(self, exc: Exception, doing: str) -> StorageError:
        return StorageError(
            f"cannot {doing} the login {self.key!r} in Redis: {type(exc).__name__}: {exc}"
        )

    # -- AuthStorage ------------------------------------------------------------------------

    async def read_auth(self) -> AuthData | None:
        """Return the stored login, or None.

        Raises:
            StorageError: Redis is unreachable, or the stored data cannot be parsed.
        """
        try:
            raw, version = await self._client.hmget(self.data_key, ["data", "version"])
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "read") from exc
        held = self._held.get()
        if held is not None:
            held.version = int(version or 0)
        if raw is None:
            return None
        return parse_stored(raw, where=f"the login stored at Redis key {self.data_key!r}")

    async def write_auth(self, data: AuthData) -> None:
        """Store ``data``; fenced when called while holding `lock()`.

        Raises:
            StorageError: Redis is unreachable, or (fenced) the lock was lost or another
                writer stored a newer login meanwhile; nothing was written then.
        """
        payload = json.dumps(data.to_dict())
        held = self._held.get()
        try:
            wid = secrets.token_hex(8)
            if held is None:
                await self._write(keys=[self.data_key], args=[self.channel, payload, wid])
                return
            result = int(
                await self._fenced_write(
                    keys=[self.data_key, self.lock_key],
                    args=[self.channel, held.token, held.version, payload, wid],
                )
            )
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "write") from exc
        if result == -1:
            raise StorageError(
                f"lost the refresh lock on {self.key!r} before writing (it expired); "
                "the newer login stored by another holder was kept"
            )
        if result == -2:
            raise StorageError(
                f"the login {self.key!r} changed while we refreshed; kept the newer one"
            )
        held.version = result

    async def clear_auth(self) -> None:
        """Log out: under ``lock()`` (a refresh in flight on any host finishes first),
        delete the stored login and leave the logout mark that tells it from data loss
        (the version counter stays, so watchers see the change)."""
        async with self.lock():
            await self.clear_auth_locked()

    async def clear_auth_locked(self) -> None:
        """Delete the stored login and mark the logout; the caller holds ``lock()``
        (fenced: a holder whose lock expired deletes nothing).

        Raises:
            StorageError: Redis is unreachable, or the lock was lost.
        """
        held = self._held.get()
        keys = [self.data_key] if held is None else [self.data_key, self.lock_key]
        args = [self.channel, secrets.token_hex(8)] + ([] if held is None else [held.token])
        try:
            result = int(await self._clear(keys=keys, args=args))
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "delete") from exc
        if result == -1:
            raise StorageError(
                f"lost the lock on {self.key!r} before deleting the login (it expired); "
                "nothing was deleted: log out again"
            )

    async def replace_auth(self, expected: AuthData, data: AuthData) -> bool:
        """While holding ``lock()``: store ``data`` (fenced) if the stored login is still
        ``expected``; False (nothing written) after a logout or another login.

        Raises:
            StorageError: Redis is unreachable, or the lock was lost.
        """
        if await self.read_auth() != expected:
            return False
        await self.write_auth(data)
        return True

    async def logged_out(self) -> bool:
        """True when the login was removed by a logout (`clear_auth`), False when it was
        never stored or vanished without one (a flush, a restart without persistence, an
        eviction: data loss, which the managers holding it repair).

        Raises:
            StorageError: Redis is unreachable.
        """
        try:
            return await self._client.hget(self.data_key, "out") is not None
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "read") from exc

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        return await self.read_auth() is not None

    async def _version(self) -> tuple[int, object] | None:
        """The version and write id: what changes with every write or clear, and cannot
        repeat after data loss (the version alone can)."""
        try:
            version, wid = await self._client.hmget(self.data_key, ["version", "wid"])
        except redis.exceptions.RedisError:
            _check_cancelled()
            return None
        return int(version or 0), wid

    async def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
        """Yield when the login was written or cleared by anyone. Every login of one client
        shares one pub/sub connection (see ``storage/_redis_hub.py``); a message on this
        login's channel, or a (re)confirmed subscription, makes it read ``version``.
        ``interval`` is unused: Redis notifies."""
        last = await self._version()
        async with hub_for(self._client).listening(self.channel) as woken:
            while True:
                # redis-py may swallow a cancellation inside a command (it then answers or
                # fails as usual): honour it here, or a stopped watcher waits for ever.
                _check_cancelled()
                await woken.wait()
                woken.clear()
                current = await self._version()
                if current is not None and current != last:
                    last = current
                    yield

    # -- the lock ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the cross-host refresh lock (renewed in the background while held).

        Cancellation-safe: a caller cancelled while acquiring or releasing never leaves the
        lock held by nobody; the next ``lock()`` of this object reclaims it at once.

        Raises:
            StorageError: Redis is unreachable, or the lock stayed taken over ``lock_timeout``.
        """
        async with self._local_lock:
            token = secrets.token_hex(16)
            try:
                await self._acquire(token)
            except BaseException:
                self._stale = token  # the SET may have reached Redis: ours to reclaim
                _ = self._release_in_background(token)
                raise
            self._stale = None
            held = _Held(token)
            reset = self._held.set(held)
            renewer = asyncio.create_task(self._keep_alive(token))
            try:
                yield
            finally:
                renewer.cancel()
                self._held.reset(reset)
                release = self._release_in_background(token)
                await asyncio.wait({renewer})
                await asyncio.shield(release)

    def _release_in_background(self, token: str) -> asyncio.Task[None]:
        """Release ``token`` in a task that outlives a cancelled caller."""
        task = asyncio.create_task(self._release_token(token))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _release_token(self, token: str) -> None:
        try:
            await self._release(keys=[self.lock_key], args=[self.channel, token])
        except redis.exceptions.RedisError as exc:
            # Reclaimed by our next lock(); expires on its own after lock_ttl otherwise.
            self._stale = token
            log.warning("could not release the Redis lock: %s", type(exc).__name__)
        else:
            if self._stale == token:
                self._stale = None

    async def _try_acquire(self, token: str, ttl_ms: int) -> bool:
        try:
            return bool(
                await self._acquire_script(
                    keys=[self.lock_key], args=[token, self._stale or "", ttl_ms]
                )
            )
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "lock") from exc

    async def _acquire(self, token: str) -> None:
        started = time.monotonic()
        ttl_ms = int(self.lock_ttl * 1000)
        if await self._try_acquire(token, ttl_ms):
            return
        # Taken: listen for the holder's release, then try again (a short poll remains
        # for a release published before our subscription was confirmed).
        async with hub_for(self._client).listening(self.channel) as woken:
            while not await self._try_acquire(token, ttl_ms):
                _check_cancelled()  # redis-py may have swallowed it (see changes())
                waited = time.monotonic() - started
                if waited > self.lock_timeout:
                    raise StorageError(
                        f"the refresh lock {self.lock_key!r} stayed taken for over "
                        f"{self.lock_timeout:g} s; is another host's refresh hanging?"
                    )
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        min(_WAKE_FALLBACK, self.lock_timeout - waited + 0.001)
                    ):
                        await woken.wait()
                _check_cancelled()
        log.debug(
            "redis lock acquired",
            extra={"key": self.lock_key, "waited_s": time.monotonic() - started},
        )

    async def _keep_alive(self, token: str) -> None:
        ttl_ms = int(self.lock_ttl * 1000)
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                renewed = await self._renew(keys=[self.lock_key], args=[token, ttl_ms])
            except redis.exceptions.RedisError as exc:
                _check_cancelled()
                log.warning("could not renew the Redis lock: %s", type(exc).__name__)
                continue
            if not renewed:
                log.warning("the Redis lock expired while held; writes will be refused")
                return
