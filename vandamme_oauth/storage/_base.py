"""The AuthStorage protocol every backend implements, and storing a new login.

The login itself, ``AuthData``, lives on the ground floor (``vandamme_oauth._login``) and is
re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._login import FORMAT_VERSION, AuthData, parse_stored

if TYPE_CHECKING:
    import contextlib
    from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

__all__ = [
    "FORMAT_VERSION",
    "AuthData",
    "AuthStorage",
    "ConditionalWrite",
    "KnowsLogouts",
    "LockedClear",
    "Preparable",
    "RemembersProvider",
    "Watchable",
    "log_out",
    "parse_stored",
    "store_login",
]


@runtime_checkable
class AuthStorage(Protocol):
    """Where a login lives. Every method is async; backends keep blocking I/O off the loop.

    ``lock()`` excludes other refreshers of the same login: other coroutines, and for the
    file and Redis backends other processes and hosts. Hold it across re-read, refresh and
    write so a rotating refresh token is spent exactly once.

    Optional capabilities are protocols of their own, which a backend declares by deriving
    from them (mypy then checks that it implements them): `Watchable`, `Preparable` and
    `RemembersProvider`.
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
        """Delete the stored login (no error when there is none). Our backends take
        ``lock()`` for it, so a logout waits for a refresh in flight and stays a logout."""
        ...

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        ...

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager excluding other refreshers of this login."""
        ...


@runtime_checkable
class Watchable(Protocol):
    """A backend that can say when the stored login may have changed (otherwise the
    [`TokenManager`][vandamme_oauth.TokenManager]'s watcher polls ``read_auth()``)."""

    def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
        """An async generator yielding whenever the stored login may have changed;
        ``interval`` is how often to look when the backend cannot be notified."""
        ...


@runtime_checkable
class Preparable(Protocol):
    """A backend with work to do before a first refresh (imports, connections)."""

    async def prepare(self) -> None:
        """Get ready for a first refresh, so that it costs only its round trip."""
        ...


@runtime_checkable
class RemembersProvider(Protocol):
    """A backend that keeps the provider profile of a login made by a login flow."""

    async def remember_provider(self, profile: Mapping[str, Any]) -> None:
        """Keep ``profile`` (a JSON-ready dict, no secrets) beside the login."""
        ...


@runtime_checkable
class ConditionalWrite(Protocol):
    """A backend that can write a refreshed login only over the one it replaces
    (compare-and-swap), so a refresh that lost to a logout or to another program's login is
    dropped, never written."""

    async def replace_auth(self, expected: AuthData, data: AuthData) -> bool:
        """While holding ``lock()``: store ``data`` if the stored login is still
        ``expected``; False (nothing written) if it is not.

        Raises:
            StorageError: the store cannot be read or written.
        """
        ...


@runtime_checkable
class LockedClear(Protocol):
    """A backend whose delete can run inside a ``lock()`` the caller already holds (a
    logout that revokes what is stored and deletes it, with no refresh in between)."""

    async def clear_auth_locked(self) -> None:
        """Delete the stored login; the caller holds ``lock()``."""
        ...


@runtime_checkable
class KnowsLogouts(Protocol):
    """A backend that tells a logout (a mark left by ``clear_auth()``) from a login that
    vanished (a flush, a restart without persistence, an eviction): the managers holding
    a valid login write it back after data loss instead of logging everybody out."""

    async def logged_out(self) -> bool:
        """True when the stored login was removed by ``clear_auth()``."""
        ...


async def log_out(
    storage: AuthStorage, revoke: Callable[[AuthData], Awaitable[object]] | None = None
) -> AuthData | None:
    """End the stored login for good: under ``lock()`` (so a refresh in flight finishes
    first), read it, ``revoke`` it (your callable; its errors are yours to catch) and delete
    it. Returns the login that was deleted, or None when there was none.

    Raises:
        StorageError: the store cannot be locked, read or deleted.
    """
    if not isinstance(storage, LockedClear):  # a backend of yours: its own clear_auth()
        auth = await storage.read_auth()
        if auth is not None and revoke is not None:
            await revoke(auth)
        await storage.clear_auth()
        return auth
    async with storage.lock():
        auth = await storage.read_auth()
        if auth is not None and revoke is not None:
            await revoke(auth)
        await storage.clear_auth_locked()
    return auth


async def store_login(storage: AuthStorage, auth: AuthData, profile: Mapping[str, Any]) -> None:
    """Store a new login: first its provider profile, where the backend keeps one (the
    optional ``remember_provider(profile)``), then the tokens. Tokens are never stored
    without the profile that says where they can be refreshed and revoked."""
    if isinstance(storage, RemembersProvider):
        await storage.remember_provider(profile)
    await storage.write_auth(auth)
