"""The AuthStorage protocol every backend implements, and storing a new login.

The login itself, ``AuthData``, lives on the ground floor (``vandamme_oauth._login``) and is
re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._login import FORMAT_VERSION, AuthData, parse_stored

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Mapping

__all__ = ["FORMAT_VERSION", "AuthData", "AuthStorage", "parse_stored", "store_login"]


@runtime_checkable
class AuthStorage(Protocol):
    """Where a login lives. Every method is async; backends keep blocking I/O off the loop.

    ``lock()`` excludes other refreshers of the same login: other coroutines, and for the
    file and Redis backends other processes and hosts. Hold it across re-read, refresh and
    write so a rotating refresh token is spent exactly once.

    Optional, found by name: ``changes(*, interval)``, an async generator yielding whenever
    the stored login may have changed (the [`TokenManager`][vandamme_oauth.TokenManager]'s watcher
    polls ``read_auth()`` otherwise); ``prepare()``, a coroutine that gets the backend ready
    for a first refresh; and ``remember_provider(profile)``, a coroutine keeping the
    provider profile (a JSON-ready dict, no secrets) of a login made by a login flow.
    """

    async def read_auth(self) -> AuthData | None:
        """Return the stored login, or None when there is none.

        Raises:
            StorageError: the stored data exists but cannot be read or parsed.
        """
        ...

    async def write_auth(self, data: AuthData) -> None:
        """Store ``data`` atomically: a reader sees the old login or the new one, never half."""
        ...

    async def clear_auth(self) -> None:
        """Delete the stored login (no error when there is none)."""
        ...

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        ...

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager excluding other refreshers of this login."""
        ...


async def store_login(storage: AuthStorage, auth: AuthData, profile: Mapping[str, Any]) -> None:
    """Store a new login: first its provider profile, where the backend keeps one (the
    optional ``remember_provider(profile)``), then the tokens. Tokens are never stored
    without the profile that says where they can be refreshed and revoked."""
    remember = getattr(storage, "remember_provider", None)
    if remember is not None:
        await remember(profile)
    await storage.write_auth(auth)
