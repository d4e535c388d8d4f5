"""LoginPool: the token managers of many logins in one place, by login name.

A web app that signs each user in, or a gateway holding one login per user and server,
asks the pool instead of keeping its own dict of managers: a manager is made on first use,
closed once it has been idle for ``idle_timeout`` seconds (and made again on the next use),
and `health()` reports every live login's state without a request. Managers of one token
endpoint share its HTTP client and its bound on refreshes in flight (`_endpoints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ._closing import AsyncClosing
from ._exceptions import OAuthError
from ._token_manager import ManagerState, TokenManager

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._login import AuthData
    from ._provider import ProviderConfig
    from .storage._base import AuthStorage

__all__ = ["LoginPool"]


class LoginPool(AsyncClosing):
    """Token managers by login name, made on first use and closed when idle.

    Args:
        provider: The provider of every login, or a function from a login name to its
            provider.
        storage_for: The storage of a login, from its name (e.g.
            ``lambda name: RedisAuthStorage(client, key=f"app:{name}")``).
        idle_timeout: Seconds after its last use that a manager is closed (None: never).
        idle_clock: Monotonic seconds, for idleness (injectable for tests).
        **options: Passed to every `TokenManager` (``refresh_margin``, ``http_client``...).
    """

    def __init__(
        self,
        provider: ProviderConfig | Callable[[str], ProviderConfig],
        storage_for: Callable[[str], AuthStorage],
        *,
        idle_timeout: float | None = 600.0,
        idle_clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        self._provider = provider
        self._storage_for = storage_for
        self.idle_timeout = idle_timeout
        self._clock = idle_clock
        self._options = options
        # Least recently used first: the idle ones are found at the front, in O(1) each.
        self._managers: OrderedDict[str, tuple[TokenManager, float]] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"LoginPool({len(self._managers)} logins)"

    def __len__(self) -> int:
        return len(self._managers)

    def __contains__(self, name: object) -> bool:
        return name in self._managers

    def manager(self, name: str) -> TokenManager:
        """The manager of login ``name``, made now if there is none; marks it used.

        Raises:
            OAuthError: the pool is closed.
        """
        if self._closed:
            raise OAuthError("this LoginPool is closed")
        now = self._clock()
        found = self._managers.pop(name, None)
        if found is None:
            provider = self._provider if not callable(self._provider) else self._provider(name)
            manager = TokenManager(provider, self._storage_for(name), **self._options)
        else:
            manager = found[0]
        self._managers[name] = (manager, now)  # to the back: the most recently used
        self._close_idle(now)
        return manager

    async def get_access_token(self, name: str) -> str:
        """A valid access token of login ``name`` (see `TokenManager.get_access_token`)."""
        return await self.manager(name).get_access_token()

    async def get_auth_data(self, name: str) -> AuthData:
        """The whole login ``name`` (see `TokenManager.get_auth_data`)."""
        return await self.manager(name).get_auth_data()

    def health(self) -> dict[str, ManagerState]:
        """The state of every live login, by name; no request, no storage read."""
        return {name: manager.state for name, (manager, _) in self._managers.items()}

    def _close_idle(self, now: float) -> None:
        """Close the managers unused for ``idle_timeout`` (from the least recently used)."""
        if self.idle_timeout is None:
            return
        while self._managers:
            name, (manager, used) = next(iter(self._managers.items()))
            if now - used < self.idle_timeout:
                return
            del self._managers[name]
            task = asyncio.create_task(manager.aclose(), name=f"vandamme-oauth close {name}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close_idle(self) -> list[str]:
        """Close the managers idle for ``idle_timeout`` now; return their names."""
        before = set(self._managers)
        self._close_idle(self._clock())
        if self._closing:
            await asyncio.wait(set(self._closing))
        return sorted(before - set(self._managers))

    async def forget(self, name: str) -> None:
        """Close and drop the manager of ``name`` (e.g. after a logout)."""
        found = self._managers.pop(name, None)
        if found is not None:
            await found[0].aclose()

    async def aclose(self) -> None:
        """Close every manager (each waits for a refresh in flight to be stored)."""
        self._closed = True
        managers = [manager for manager, _ in self._managers.values()]
        self._managers.clear()
        for manager in managers:
            with contextlib.suppress(Exception):
                await manager.aclose()
        if self._closing:
            await asyncio.wait(set(self._closing))
