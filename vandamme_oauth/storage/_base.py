"""The AuthStorage protocol every backend implements, and storing a new login.

The login itself, ``AuthData``, lives on the ground floor (``vandamme_oauth._login``) and is
re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._login import FORMAT_VERSION, AuthData, parse_stored

if TYPE_CHECKING:
    import contextlib
    from collections.abc import AsyncGenerator, Mapping

__all__ = [
    "FORMAT_VERSION",
    "AuthData",
    "AuthStorage",
    "Preparable",
    "RemembersProvider",
    "Watchable",
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
        """Delete the stored login (no error when there is none)."""
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


async def store_login(storage: AuthStorage, auth: AuthData, profile: Mapping[str, Any]) -> None:
    """Store a new login: first its provider profile, where the backend keeps one (the
    optional ``remember_provider(profile)``), then the tokens. Tokens are never stored
    without the profile that says where they can be refreshed and revoked."""
    if isinstance(storage, RemembersProvider):
        await storage.remember_provider(profile)
    await storage.write_auth(auth)
