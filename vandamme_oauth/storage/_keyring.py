"""KeyringAuthStorage: the login in the OS keyring (extra ``keyring``), never hanging.

A locked or absent Secret Service, a D-Bus that never answers, or a keyring that needs a
prompt nobody can see must not hang a CLI or a proxy. Every keyring call therefore runs in a
daemon thread with a hard timeout. When the keyring times out or fails, the storage switches,
for the rest of its life, to its fallback
[`FileSystemAuthStorage`][vandamme_oauth.FileSystemAuthStorage] and says so: a WARNING log record
and the ``on_fallback`` callback (the CLI prints it). It never falls back silently. ``lock()`` is
the fallback file's cross-process lock, since keyrings have none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from .._secrets import keeps_nothing
from ._base import AuthData, ConditionalWrite, LockedClear, RemembersProvider, parse_stored
from ._filesystem import FileSystemAuthStorage, check_login_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    import keyring.backend

__all__ = ["KeyringAuthStorage"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class _KeyringUnusable(Exception):
    """The keyring timed out or failed; the reason is the message."""


async def _in_daemon_thread(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a daemon thread; give up after ``timeout`` seconds (the thread is left
    behind, and cannot keep the process alive)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result: Any = fn()
            error: BaseException | None = None
        except BaseException as exc:  # delivered to the waiting task
            result, error = None, exc

        def deliver() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(deliver)

    threading.Thread(target=run, name="vandamme-oauth-keyring", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise _KeyringUnusable(f"the keyring did not answer within {timeout:g} s") from None


class KeyringAuthStorage(RemembersProvider, ConditionalWrite, LockedClear):
    """An [`AuthStorage`][vandamme_oauth.AuthStorage] in the OS keyring, with a hard timeout and an
    announced fallback to a file.

    Args:
        name: The login's name (the keyring "username").
        service: The keyring service name.
        timeout: Seconds any keyring call may take before we give up on the keyring.
        fallback: Where to go when the keyring is unusable (default: the file backend in
            the default home, same name).
        backend: A ``keyring`` backend to use instead of the system's default.
        on_fallback: Called once with the reason when the storage falls back.
    """

    def __init__(
        self,
        name: str = "chatgpt",
        *,
        service: str = "vandamme-oauth",
        timeout: float = 3.0,
        fallback: FileSystemAuthStorage | None = None,
        backend: keyring.backend.KeyringBackend | None = None,
        on_fallback: Callable[[str], object] | None = None,
    ) -> None:
        self.name = check_login_name(name)
        self.service = service
        self.timeout = timeout
        self.fallback = fallback or FileSystemAuthStorage(name=name)
        self._backend = backend
        self._on_fallback = on_fallback
        self.fallback_reason: str | None = None

    def __repr__(self) -> str:
        where = "file fallback" if self.fallback_reason else "keyring"
        return f"KeyringAuthStorage(name={self.name!r}, service={self.service!r}, using={where})"

    def _fall_back(self, reason: str) -> None:
        if self.fallback_reason is None:
            self.fallback_reason = reason
            log.warning(
                "keyring unusable (%s); storing the login in %s instead",
                reason,
                self.fallback.path,
            )
            if self._on_fallback is not None:
                self._on_fallback(
                    f"The OS keyring is unusable ({reason}); using {self.fallback.path} instead."
                )

    async def _call(self, op: Callable[[keyring.backend.KeyringBackend], T]) -> T | None:
        """Run ``op`` on the keyring, or return None after falling back."""
        if self.fallback_reason is not None:
            return None

        def run() -> T:
            import keyring  # lazily: an optional extra, and its import may be slow

            backend = self._backend or keyring.get_keyring()
            if keeps_nothing(backend):
                raise _KeyringUnusable(f"{type(backend).__module__} keeps no passwords")
            return op(backend)

        try:
            return await _in_daemon_thread(run, self.timeout)
        except _KeyringUnusable as exc:
            self._fall_back(str(exc))
        except ImportError:
            self._fall_back("the keyring package is not installed")
        except Exception as exc:  # keyring.errors.* and backend failures (D-Bus, locked...)
            self._fall_back(f"{type(exc).__name__}: {exc}")
        return None

    async def read_auth(self) -> AuthData | None:
        """Return the stored login (from the fallback file once fallen back)."""
        raw = await self._call(lambda kr: kr.get_password(self.service, self.name))
        if self.fallback_reason is not None:
            return await self.fallback.read_auth()
        if raw is None:
            return None
        return parse_stored(raw, where=f"the keyring entry {self.service}/{self.name}")

    async def write_auth(self, data: AuthData) -> None:
        """Store ``data`` in the keyring (or the fallback file)."""
        payload = json.dumps(data.to_dict())
        await self._call(lambda kr: kr.set_password(self.service, self.name, payload))
        if self.fallback_reason is not None:
            await self.fallback.write_auth(data)

    async def clear_auth(self) -> None:
        """Delete the login from the keyring and the fallback file, under ``lock()``: a
        refresh in flight finishes first and cannot write the login back."""
        async with self.lock():
            await self.clear_auth_locked()

    async def clear_auth_locked(self) -> None:
        """Delete the login; the caller holds ``lock()``."""

        def delete(kr: keyring.backend.KeyringBackend) -> None:
            with contextlib.suppress(Exception):  # PasswordDeleteError: nothing stored
                kr.delete_password(self.service, self.name)

        await self._call(delete)
        await self.fallback.clear_auth_locked()

    async def replace_auth(self, expected: AuthData, data: AuthData) -> bool:
        """While holding ``lock()``: store ``data`` if the stored login is still
        ``expected``; False (nothing written) after a logout or another login."""
        if await self.read_auth() != expected:
            return False
        await self.write_auth(data)
        return True

    async def remember_provider(self, profile: Mapping[str, Any]) -> None:
        """Save the provider profile (no secrets) beside the fallback file, where the CLI
        looks for it whichever of the two holds the tokens."""
        await self.fallback.remember_provider(profile)

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        return await self.read_auth() is not None

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """The fallback file's cross-process lock (keyrings have no locking)."""
        async with self.fallback.lock():
            yield
