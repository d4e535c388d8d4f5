"""InMemoryAuthStorage: a login kept in this process only (tests, short-lived programs)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from ._base import ConditionalWrite, LockedClear, Watchable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from ._base import AuthData

__all__ = ["InMemoryAuthStorage"]


class InMemoryAuthStorage(Watchable, ConditionalWrite, LockedClear):
    """An [`AuthStorage`][vandamme_oauth.AuthStorage] that keeps one login in memory; also the
    official test fake.

    Args:
        initial: A login to start with.
    """

    def __init__(self, initial: AuthData | None = None) -> None:
        self._data = initial
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"InMemoryAuthStorage(authenticated={self._data is not None})"

    async def read_auth(self) -> AuthData | None:
        """Return the stored login, or None."""
        return self._data

    async def write_auth(self, data: AuthData) -> None:
        """Replace the stored login with ``data``."""
        self._data = data
        self._notify()

    async def clear_auth(self) -> None:
        """Forget the stored login (under ``lock()``: a refresh in flight ends first)."""
        async with self.lock():
            await self.clear_auth_locked()

    async def clear_auth_locked(self) -> None:
        """Forget the stored login; the caller holds ``lock()``."""
        self._data = None
        self._notify()

    async def replace_auth(self, expected: AuthData, data: AuthData) -> bool:
        """Store ``data`` if the stored login is still ``expected`` (caller holds ``lock()``)."""
        if self._data != expected:
            return False
        await self.write_auth(data)
        return True

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
        """Yield after every write or clear (``interval`` is unused: writes notify)."""
        event = self._changed
        while True:
            await event.wait()
            event = self._changed  # a write while the consumer works sets this one
            yield

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        return self._data is not None

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Exclude other coroutines refreshing this login."""
        async with self._lock:
            yield
