"""FileSystemAuthStorage: one JSON file per login in a private folder.

Writes go to a temporary file in the same folder, are fsync'd and moved into place with
``os.replace``, so a crash leaves the old login or the new one, never half of either. Files are
0600 in a 0700 folder. A file that cannot be parsed raises
[`StorageError`][vandamme_oauth.StorageError] naming its path; a later write moves it aside
(``*.corrupt-<time>``) instead of destroying it. ``lock()`` is an operating-system file lock beside
the file (``filelock``), released by the kernel if its holder dies, so refreshes are single-flight
across processes too. All blocking work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib
import json
import logging
import os
import secrets
import stat
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._exceptions import StorageError, ValidationError
from .._login import _NAME_RE, AuthData, check_login_name
from ._base import ConditionalWrite, LockedClear, Preparable, RemembersProvider, Watchable
from ._home_watch import home_watcher, stat_of

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Mapping

    import filelock

__all__ = ["FileSystemAuthStorage", "check_login_name", "default_home", "list_logins"]

log = logging.getLogger(__name__)

_HOME_ENV = "VANDAMME_OAUTH_HOME"


def default_home() -> Path:
    """``$VANDAMME_OAUTH_HOME``, else ``$XDG_CONFIG_HOME/vandamme-oauth``, else ~/.config/..."""
    env = os.environ.get(_HOME_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vandamme-oauth"


def list_logins(home_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the logins stored in ``home_dir`` (blocking; call from a worker thread)."""
    home = Path(home_dir)
    if not home.is_dir():
        return []
    return sorted(
        p.name[: -len(".json")]
        for p in home.glob("*.json")
        if not p.name.endswith(".provider.json") and _NAME_RE.match(p.name[: -len(".json")])
    )


class _Unparsable(Exception):
    """The auth file did not parse within the grace period (internal)."""

    def __init__(self, reason: str, *, changed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.changed = changed


class FileSystemAuthStorage(
    Watchable, Preparable, RemembersProvider, ConditionalWrite, LockedClear
):
    """An [`AuthStorage`][vandamme_oauth.AuthStorage] keeping one login in
    ``{home_dir}/{name}.json``.

    Args:
        home_dir: The folder (str or path). Default: `default_home()`.
        name: The login's name, used as the file name (default ``"chatgpt"``).
        lock_timeout: Seconds ``lock()`` waits for another process before raising.
        foreign_write_grace: Seconds an unparsable file is read again (another program may
            be writing it) before it is judged corrupt.
        provider: The old keyword for ``name`` (deprecated; it never meant a
            [`ProviderConfig`][vandamme_oauth.ProviderConfig]).
    """

    def __init__(
        self,
        home_dir: str | os.PathLike[str] | None = None,
        name: str = "chatgpt",
        *,
        lock_timeout: float = 60.0,
        foreign_write_grace: float = 1.0,
        provider: str | None = None,
    ) -> None:
        if provider is not None:
            warnings.warn(
                "FileSystemAuthStorage(provider=...) is deprecated: the argument is the "
                "login's name; use name=...",
                DeprecationWarning,
                stacklevel=2,
            )
            name = provider
        self.home_dir = Path(home_dir).expanduser() if home_dir is not None else default_home()
        self.name = check_login_name(name)
        self.path = self.home_dir / f"{self.name}.json"
        self.lock_path = self.home_dir / f"{self.name}.json.lock"
        #: The provider profile saved beside the login (no secrets), see remember_provider.
        self.profile_path = self.home_dir / f"{self.name}.provider.json"
        self.lock_timeout = lock_timeout
        self.foreign_write_grace = foreign_write_grace
        self._local_lock = asyncio.Lock()
        self._in_flight: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        return f"FileSystemAuthStorage(path={str(self.path)!r})"

    # -- blocking helpers, run in worker threads --------------------------------------------

    def _ensure_home(self) -> None:
        """Create the home 0700 if it is missing. A folder that exists is left as it is (it
        may be the user's own, such as ``--home .``), unless other users can write to it:
        they could swap our files, so it is refused."""
        try:
            try:
                self.home_dir.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                pass
            else:
                self.home_dir.chmod(0o700)  # mkdir's mode is filtered by the umask
                return
            mode = self.home_dir.stat().st_mode
        except OSError as exc:
            raise StorageError(
                f"cannot create the folder {self.home_dir}: {exc.strerror or exc}; "
                "pick a writable folder with --home or VANDAMME_OAUTH_HOME"
            ) from exc
        if not stat.S_ISDIR(mode):
            raise StorageError(
                f"{self.home_dir} is not a folder; pick another with --home or VANDAMME_OAUTH_HOME"
            )
        if os.name == "posix" and mode & 0o022:
            raise StorageError(
                f"the folder {self.home_dir} can be written by other users, who could replace "
                "the login stored there; pick a private folder with --home or "
                f"VANDAMME_OAUTH_HOME, or run 'chmod go-w {self.home_dir}'"
            )

    def check_home(self) -> None:
        """Raise [`StorageError`][vandamme_oauth.StorageError] now if the home cannot hold a login
        (blocking: call it from a worker thread, or use `ensure_home()`)."""
        self._ensure_home()
        if self.lock_path.is_symlink() or self.path.is_symlink():
            raise StorageError(
                f"{self.path} or its lock file is a symbolic link; remove it, or pick "
                "another folder with --home"
            )

    async def ensure_home(self) -> None:
        """Create the home folder (0700) if missing and check that it can hold a login:
        a folder, not writable by other users. Call it before a login, so that a bad home is
        reported before the browser opens rather than after the code is exchanged.

        Raises:
            StorageError: the home cannot be used; the message says what to do.
        """
        await anyio.to_thread.run_sync(self.check_home)

    # -- the file format: overridden by CodexAuthStorage ------------------------------------

    def _decode(self, raw: bytes) -> AuthData | None:
        """Parse the file's bytes: a login, or None for a valid file that holds none (raises
        ValueError or ValidationError)."""
        return AuthData.from_dict(json.loads(raw))

    def _encode(self, data: AuthData, previous: bytes | None) -> bytes:
        """The file's new bytes; ``previous`` is the current, readable content, if any."""
        return json.dumps(data.to_dict(), indent=2).encode("utf-8") + b"\n"

    def _read_raw(self, *, strict: bool = True) -> bytes | None:
        """The file's bytes, or None when there is none (or, not ``strict``, when it cannot
        be read: a write then says why it failed)."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if not strict:
                return None
            raise StorageError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _settled(self, *, strict: bool = True) -> tuple[bytes | None, AuthData | None]:
        """The file's bytes and login, read until they parse. Another program (the Codex
        CLI, an editor) may be half way through writing it, not always atomically: an
        unparsable file is read again every 50 ms for up to ``foreign_write_grace``
        seconds before it is judged corrupt.

        Raises:
            _Unparsable: still unparsable after the grace period.
            StorageError: the file cannot be read.
        """
        deadline = time.monotonic() + self.foreign_write_grace
        raw = self._read_raw(strict=strict)
        stamp = self._stat_sync()
        changed = False
        while True:
            if raw is None:
                return None, None
            try:
                return raw, self._decode(raw)
            except (ValueError, ValidationError) as exc:
                error = exc
            if time.monotonic() >= deadline:
                # JSONDecodeError and UnicodeDecodeError are ValueErrors whose text quotes
                # no file content; ValidationError messages never hold token values.
                reason = error.message if isinstance(error, ValidationError) else "not valid JSON"
                raise _Unparsable(reason, changed=changed)
            time.sleep(0.05)  # a worker thread's wait, never the event loop's
            again, again_stamp = self._read_raw(strict=strict), self._stat_sync()
            changed = changed or again != raw or again_stamp != stamp
            raw, stamp = again, again_stamp

    def _read_sync(self) -> AuthData | None:
        try:
            return self._settled()[1]
        except _Unparsable as exc:
            raise StorageError(
                f"the auth file {self.path} is unreadable ({exc.reason}); it was left "
                "untouched: log in again to replace it, or restore it from a backup"
            ) from None

    def _previous_or_quarantine(self) -> bytes | None:
        """The current content if it parses. A file that stays unparsable is moved aside
        under a name of its own, never lost; one that keeps changing belongs to a writer
        we never saw finish: nothing is written over it.

        Raises:
            StorageError: another program is still writing the file.
        """
        try:
            return self._settled(strict=False)[0]
        except _Unparsable as exc:
            if exc.changed:
                raise StorageError(
                    f"another program is writing {self.path} (it did not parse for "
                    f"{self.foreign_write_grace:g} s while it changed); nothing was written: "
                    "try again"
                ) from None
        aside = self._move_aside()
        log.warning(
            "moved the unreadable auth file aside before writing a new one",
            extra={"path": str(self.path), "moved_to": str(aside)},
        )
        return None

    def _move_aside(self) -> Path:
        """Rename the auth file to a name no earlier aside file has (a hard link that must
        not exist yet, then the old name removed): nothing is ever overwritten."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        while True:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{secrets.token_hex(4)}")
            try:
                os.link(self.path, aside)
            except FileExistsError:
                continue
            os.unlink(self.path)
            return aside

    def _replace_sync(self, expected: AuthData, data: AuthData) -> bool:
        self._ensure_home()
        try:
            raw, current = self._settled()
        except _Unparsable:
            raise StorageError(
                f"the auth file {self.path} changed while we refreshed and cannot be read "
                "(another program may be writing it); the refreshed login was not written"
            ) from None
        if current != expected:
            return False
        self._replace_with(self._encode(data, raw))
        return True

    def _write_sync(self, data: AuthData) -> None:
        self._ensure_home()
        try:
            payload = self._encode(data, self._previous_or_quarantine())
        except OSError as exc:
            raise StorageError(
                f"cannot write {self.path}: {exc.strerror or exc}; the previous login is unchanged"
            ) from exc
        self._replace_with(payload)

    def _replace_with(self, payload: bytes, path: Path | None = None) -> None:
        """Atomically make ``payload`` the content of ``path`` (default: the auth file):
        temp file, fsync, os.replace."""
        path = path or self.path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(
                f"cannot write {path}: {exc.strerror or exc}; the previous login is unchanged"
            ) from exc
        self._sync_folder()

    def _sync_folder(self) -> None:
        """Make the rename durable (POSIX). The login is already in place: a platform that
        cannot open a folder (Windows) or a failed sync is logged, never a failed write."""
        if os.name != "posix":
            return
        try:
            dir_fd = os.open(self.home_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            log.debug("could not sync the folder %s: %s", self.home_dir, exc)

    def _clear_sync(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
            # Temporary files of writes that were killed midway hold tokens too.
            for leftover in self.home_dir.glob(f".{glob.escape(self.path.name)}.*.tmp"):
                leftover.unlink(missing_ok=True)
        except FileNotFoundError:
            return  # no home at all: nothing stored
        except OSError as exc:
            raise StorageError(f"cannot delete {self.path}: {exc.strerror or exc}") from exc

    # -- AuthStorage ------------------------------------------------------------------------

    async def read_auth(self) -> AuthData | None:
        """Return the stored login, or None if the file does not exist.

        Raises:
            StorageError: the file exists but cannot be read or parsed (named in the message).
        """
        return await anyio.to_thread.run_sync(self._read_sync)

    async def write_auth(self, data: AuthData) -> None:
        """Write ``data`` atomically with mode 0600.

        Raises:
            StorageError: the folder or file cannot be written; the old file is unchanged.
        """
        await anyio.to_thread.run_sync(self._write_sync, data)

    async def clear_auth(self) -> None:
        """Delete the login's file (no error when it does not exist), under ``lock()``: a
        refresh in flight in any process finishes first, and cannot write the login back."""
        if not await anyio.to_thread.run_sync(self.home_dir.is_dir):
            return  # no home at all: nothing stored, and nothing to create for a lock
        async with self.lock():
            await self.clear_auth_locked()

    async def clear_auth_locked(self) -> None:
        """Delete the login's file; the caller holds ``lock()``."""
        await anyio.to_thread.run_sync(self._clear_sync)

    async def replace_auth(self, expected: AuthData, data: AuthData) -> bool:
        """While holding ``lock()``: write ``data`` if the file still holds ``expected``;
        False (nothing written) after a logout or another program's login.

        Raises:
            StorageError: the file cannot be read whole or written.
        """
        return await anyio.to_thread.run_sync(self._replace_sync, expected, data)

    async def is_authenticated(self) -> bool:
        """True when the file exists and holds a readable login."""
        return await self.read_auth() is not None

    async def remember_provider(self, profile: Mapping[str, Any]) -> None:
        """Save the login's provider profile (``ProviderConfig.to_dict()``, no secrets) as
        ``{home}/{name}.provider.json``, atomically and 0600. The login flows call this
        before they store tokens, so a login made from code is as complete as the CLI's:
        ``vandamme-oauth status``, ``token`` and ``logout`` know its endpoints.

        Raises:
            StorageError: the folder or file cannot be written.
        """
        payload = json.dumps(dict(profile), indent=2).encode()

        def write() -> None:
            self._ensure_home()
            self._replace_with(payload, self.profile_path)

        await anyio.to_thread.run_sync(write)

    async def prepare(self) -> None:
        """Load the file-lock machinery in a worker thread ahead of the first ``lock()``
        (importing it takes tens of milliseconds)."""
        await anyio.to_thread.run_sync(importlib.import_module, "filelock")

    def _stat_sync(self) -> tuple[int, int, int] | None:
        return stat_of(self.path)

    async def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
        """Yield when the auth file was replaced, changed or removed. All the logins of one
        home share one watcher task per event loop (one folder ``stat`` per ``interval`` in
        a worker thread; see ``storage/_home_watch.py``)."""
        watcher = home_watcher(self.home_dir, interval)
        async with watcher.watching(self.path) as changed:
            while True:
                await changed.wait()
                changed.clear()
                yield

    def _track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return future

    def _try_lock_sync(self, flock: filelock.FileLock) -> bool:
        import filelock

        if self.lock_path.is_symlink():
            raise StorageError(
                f"the lock file {self.lock_path} is a symbolic link; remove it (it is "
                "recreated as a regular file)"
            )
        try:
            flock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        except OSError as exc:
            raise StorageError(
                f"cannot lock {self.lock_path}: {exc.strerror or exc}; "
                "remove it if it is not a regular file"
            ) from exc
        return True

    @staticmethod
    def _release_sync(flock: filelock.FileLock) -> None:
        if flock.is_locked:
            flock.release(force=True)

    async def _release_after(
        self, attempt: asyncio.Future[bool] | None, flock: filelock.FileLock
    ) -> None:
        """Release ``flock`` once the last attempt's thread has ended (it may still win the
        lock after a cancelled caller left)."""
        if attempt is not None:
            await asyncio.wait({attempt})
            if not attempt.cancelled():
                attempt.exception()  # retrieved here when its caller was cancelled
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._release_sync, flock)

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold an exclusive OS file lock beside the auth file (other processes wait).

        Cancellation-safe: however the caller is cancelled (acquiring, holding or releasing),
        the OS lock is released by a task that outlives the caller if need be, and the next
        ``lock()`` on this object waits for that release first.

        Raises:
            StorageError: another process held the lock for longer than ``lock_timeout``, or
                the lock file cannot be opened.
        """
        import filelock  # lazily: only refreshers need it

        async with self._local_lock:
            while self._in_flight:  # releases left behind by cancelled callers
                await asyncio.wait(set(self._in_flight))
            await anyio.to_thread.run_sync(self._ensure_home)
            # thread_local=False: acquired in one worker thread, released in another.
            flock = filelock.FileLock(
                str(self.lock_path), mode=0o600, thread_local=False, is_singleton=False
            )
            loop = asyncio.get_running_loop()
            attempt: asyncio.Future[bool] | None = None
            try:
                # Non-blocking attempts in a worker thread, polled; the thread is never
                # abandoned holding the lock (see _release_after).
                started = time.monotonic()
                delay = 0.001
                while True:
                    attempt = loop.run_in_executor(None, self._try_lock_sync, flock)
                    if await asyncio.shield(attempt):
                        break
                    if delay == 0.001:  # the first refusal: say once that we wait
                        log.debug("file lock busy; waiting", extra={"path": str(self.lock_path)})
                    if time.monotonic() - started > self.lock_timeout:
                        raise StorageError(
                            f"another process has held the lock {self.lock_path} for over "
                            f"{self.lock_timeout:g} s; is a refresh hanging?"
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.01)
                log.debug(
                    "file lock acquired",
                    extra={"path": str(self.lock_path), "waited_s": time.monotonic() - started},
                )
                yield
            finally:
                release = self._track(asyncio.ensure_future(self._release_after(attempt, flock)))
                await asyncio.shield(release)
