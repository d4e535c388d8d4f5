"""RedisAuthStorage: one login shared by many hosts through Redis or Valkey (extra ``redis``).

Layout, for ``key="vandamme:chatgpt"``:

- ``{key}``        a hash: ``data`` (the versioned JSON of :class:`AuthData`) and ``version``
  (an integer bumped by every write);
- ``{key}:lock``   the refresh lock: ``SET NX PX`` with a random token, renewed while held,
  released only by its owner (compare-and-delete in Lua).

Writes made while holding the lock are fenced: one Lua script checks that the lock still
holds our token *and* that ``version`` is the one we read under the lock, so a holder whose
lock expired (a paused VM, a long GC) can never overwrite a newer token. Writes outside the
lock (a new login) are unconditional. Waiters poll the lock with a short exponential backoff
(2 ms to 25 ms). Every Redis failure becomes a :class:`StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
import redis.exceptions

from .._exceptions import StorageError, ValidationError
from ._base import AuthData, parse_stored

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["RedisAuthStorage"]

log = logging.getLogger(__name__)

_FENCED_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[2]) then return -2 end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'version', version + 1)
return version + 1
"""
_WRITE = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', version)
return version
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class _Held:
    """What the current task holds: the lock token and the version it last read."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.version = 0


class RedisAuthStorage:
    """An :class:`AuthStorage` in Redis/Valkey, safe to share across processes and hosts.

    Args:
        client: A ``redis.asyncio.Redis`` client (closed by :meth:`aclose` only if we made it).
        key: The login's key; use one per provider/account (e.g. ``"vandamme:chatgpt"``).
        lock_ttl: Seconds the refresh lock lives without renewal (renewed every third).
        lock_timeout: Seconds ``lock()`` waits for another holder before raising.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str,
        lock_ttl: float = 30.0,
        lock_timeout: float = 60.0,
    ) -> None:
        if not key:
            raise ValidationError("RedisAuthStorage needs a non-empty key")
        self._client = client
        self._owns_client = False
        self.key = key
        self.lock_key = f"{key}:lock"
        self.lock_ttl = lock_ttl
        self.lock_timeout = lock_timeout
        self._held: ContextVar[_Held | None] = ContextVar(
            f"vandamme-redis-{id(self)}", default=None
        )
        self._local_lock = asyncio.Lock()
        self._fenced_write = client.register_script(_FENCED_WRITE)
        self._write = client.register_script(_WRITE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    @classmethod
    def from_url(cls, url: str, *, key: str, **kwargs: Any) -> RedisAuthStorage:
        """Build from a URL such as ``redis://127.0.0.1:6379/0`` (``rediss://`` for TLS).

        Keyword arguments other than ``lock_ttl`` / ``lock_timeout`` go to the client.
        """
        options = {k: kwargs.pop(k) for k in ("lock_ttl", "lock_timeout") if k in kwargs}
        kwargs.setdefault("socket_timeout", 10.0)
        kwargs.setdefault("socket_connect_timeout", 5.0)
        storage = cls(aioredis.Redis.from_url(url, **kwargs), key=key, **options)
        storage._owns_client = True
        return storage

    def __repr__(self) -> str:
        return f"RedisAuthStorage(key={self.key!r})"

    async def aclose(self) -> None:
        """Close the client if :meth:`from_url` created it."""
        if self._owns_client:
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
            raw, version = await self._client.hmget(self.key, ["data", "version"])
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "read") from exc
        held = self._held.get()
        if held is not None:
            held.version = int(version or 0)
        if raw is None:
            return None
        return parse_stored(raw, where=f"the login stored at Redis key {self.key!r}")

    async def write_auth(self, data: AuthData) -> None:
        """Store ``data``; fenced when called while holding :meth:`lock`.

        Raises:
            StorageError: Redis is unreachable, or (fenced) the lock was lost or another
                writer stored a newer login meanwhile; nothing was written then.
        """
        payload = json.dumps(data.to_dict())
        held = self._held.get()
        try:
            if held is None:
                await self._write(keys=[self.key], args=[payload])
                return
            result = int(
                await self._fenced_write(
                    keys=[self.key, self.lock_key], args=[held.token, held.version, payload]
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
        """Delete the stored login."""
        try:
            await self._client.delete(self.key)
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, "delete") from exc

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        return await self.read_auth() is not None

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the cross-host refresh lock (renewed in the background while held).

        Raises:
            StorageError: Redis is unreachable, or the lock stayed taken over ``lock_timeout``.
        """
        async with self._local_lock:
            token = secrets.token_hex(16)
            await self._acquire(token)
            held = _Held(token)
            reset = self._held.set(held)
            renewer = asyncio.create_task(self._keep_alive(token))
            try:
                yield
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                self._held.reset(reset)
                try:
                    await self._release(keys=[self.lock_key], args=[token])
                except redis.exceptions.RedisError as exc:
                    # The lock expires on its own after lock_ttl.
                    log.warning("could not release the Redis lock: %s", type(exc).__name__)

    async def _acquire(self, token: str) -> None:
        started = time.monotonic()
        delay = 0.002
        ttl_ms = int(self.lock_ttl * 1000)
        while True:
            try:
                if await self._client.set(self.lock_key, token, nx=True, px=ttl_ms):
                    log.debug(
                        "redis lock acquired",
                        extra={"key": self.lock_key, "waited_s": time.monotonic() - started},
                    )
                    return
            except redis.exceptions.RedisError as exc:
                raise self._error(exc, "lock") from exc
            if time.monotonic() - started > self.lock_timeout:
                raise StorageError(
                    f"the refresh lock {self.lock_key!r} stayed taken for over "
                    f"{self.lock_timeout:g} s; is another host's refresh hanging?"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.025)

    async def _keep_alive(self, token: str) -> None:
        ttl_ms = int(self.lock_ttl * 1000)
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                renewed = await self._renew(keys=[self.lock_key], args=[token, ttl_ms])
            except redis.exceptions.RedisError as exc:
                log.warning("could not renew the Redis lock: %s", type(exc).__name__)
                continue
            if not renewed:
                log.warning("the Redis lock expired while held; writes will be refused")
                return
