"""FileSystemAuthStorage: permissions, atomic writes, corrupt files and unwritable homes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
from typing import TYPE_CHECKING, Any

import filelock
import httpx
import pytest

from tests.conftest import FakeClock
from tests.storage.test_contract import LOGIN, relogin_and_logout_reach_a_manager
from tests.support.managers import FakeTokenEndpoint, manager
from vandamme_oauth import FileSystemAuthStorage, StorageError
from vandamme_oauth.storage import default_home, list_logins
from vandamme_oauth.storage._home_watch import home_watcher

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def storage_error(call: Awaitable[object]) -> str:
    """The message of the StorageError that awaiting ``call`` raises."""
    with pytest.raises(StorageError) as caught:
        await call
    return str(caught.value)


async def test_files_are_private(tmp_path: Path) -> None:
    """A home the library creates is 0700 (whatever the umask) and the file 0600."""
    home = tmp_path / "a" / "home"
    old = os.umask(0o022)
    try:
        storage = FileSystemAuthStorage(str(home), "p")
        await storage.write_auth(LOGIN)
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    assert mode(storage.path) == 0o600
    assert storage.path == home / "p.json"


async def test_an_existing_home_is_left_as_it_is(tmp_path: Path) -> None:
    """A folder the user already has (say ``--home .``, 0755) keeps its mode; the login file
    in it is still 0600."""
    home = tmp_path / "mine"
    home.mkdir()
    os.chmod(home, 0o755)
    storage = FileSystemAuthStorage(home, "p")
    await storage.write_auth(LOGIN)
    assert mode(home) == 0o755
    assert mode(storage.path) == 0o600


@pytest.mark.parametrize("folder_mode", [0o777, 0o1777, 0o775])
async def test_a_home_others_can_write_is_refused(tmp_path: Path, folder_mode: int) -> None:
    """A home writable by other users (like /tmp), directly or through a symlink, is a
    StorageError before anything is written, and its mode is not changed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, folder_mode)
    link = tmp_path / "link"
    link.symlink_to(shared)
    for home in (shared, link):
        storage = FileSystemAuthStorage(home, "p")
        with pytest.raises(StorageError, match="other users"):
            await storage.write_auth(LOGIN)
        with pytest.raises(StorageError, match="other users"):
            await storage.ensure_home()
    assert mode(shared) == folder_mode
    assert list(shared.iterdir()) == []


async def test_ensure_home_refuses_a_file(tmp_path: Path) -> None:
    """A home that is a regular file is reported by ensure_home() (before any login)."""
    home = tmp_path / "file"
    home.write_text("")
    with pytest.raises(StorageError, match="not a folder"):
        await FileSystemAuthStorage(home, "p").ensure_home()


async def test_lock_file_that_is_a_symlink_is_a_storage_error(tmp_path: Path) -> None:
    """A symlink where the lock file should be is refused with a StorageError, not
    followed."""
    storage = FileSystemAuthStorage(tmp_path / "home", "p")
    await storage.ensure_home()
    target = tmp_path / "elsewhere"
    storage.lock_path.symlink_to(target)
    with pytest.raises(StorageError) as caught:
        async with storage.lock():
            pass
    assert str(caught.value) == (
        f"the lock file {storage.lock_path} is a symbolic link; remove it (it is recreated "
        "as a regular file)"
    )
    assert not target.exists()


async def test_a_lock_path_that_cannot_be_opened_says_what_to_do(tmp_path: Path) -> None:
    """A folder where the lock file should be: a StorageError with the reason and the fix."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.lock_path.mkdir()
    with pytest.raises(StorageError) as caught:
        async with storage.lock():
            pass
    assert str(caught.value) == (
        f"cannot lock {storage.lock_path}: Is a directory; remove it if it is not a regular file"
    )


async def test_clear_removes_temporary_files_left_by_a_killed_write(tmp_path: Path) -> None:
    """Logout leaves no token on disk: leftover ``.p.json.*.tmp`` files go too; other
    logins' files stay."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    await storage.write_auth(LOGIN)
    leftover = tmp_path / ".p.json.123.456.tmp"
    leftover.write_text("{}")
    other = tmp_path / ".q.json.123.456.tmp"
    other.write_text("{}")
    await storage.clear_auth()
    assert not storage.path.exists()
    assert not leftover.exists()
    assert other.exists()


async def test_a_folder_that_cannot_be_synced_does_not_fail_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.replace succeeded: a folder fsync the platform refuses (Windows cannot open a
    folder) is not reported as a failed write."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    real_open = os.open

    def no_folders(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if os.fspath(path) == os.fspath(tmp_path):
            raise PermissionError(13, "cannot open a folder here")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_folders)
    await storage.write_auth(LOGIN)
    monkeypatch.undo()
    assert await storage.read_auth() == LOGIN


async def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    """After many writes only the auth file (and nothing half-written) is there."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    await asyncio.gather(
        *(storage.write_auth(LOGIN.replace(access_token=f"A{i}")) for i in range(20))
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token.startswith("A")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"version": 1, "tokens": {"access_tok', "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"version": 99, "tokens": {}}', "unsupported auth data version"),
        (b'{"version": 1, "tokens": {"access_token": ""}}', "no access token"),
        (b'{"version": 1, "tokens": {"access_token": "A"}, "expires_at": "soon"}', "RFC 3339"),
    ],
)
async def test_corrupt_file_raises_storage_error_naming_the_path(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    """An unreadable file raises StorageError with the path and reason, and stays untouched."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.path.write_bytes(content)
    with pytest.raises(StorageError) as caught:
        await storage.read_auth()
    assert str(storage.path) in str(caught.value)
    assert reason in str(caught.value)
    assert storage.path.read_bytes() == content


async def test_writing_over_a_corrupt_file_moves_it_aside(tmp_path: Path) -> None:
    """A new login never destroys an unreadable file: it is kept as *.corrupt-<time>."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.path.write_bytes(b"{truncated")
    await storage.write_auth(LOGIN)
    assert await storage.read_auth() == LOGIN
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    assert aside[0].read_bytes() == b"{truncated"


async def test_unwritable_home_raises_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    """A home that cannot be created gives a StorageError that says what to do."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    storage = FileSystemAuthStorage(blocker / "home", "p")
    with pytest.raises(StorageError, match="--home"):
        await storage.write_auth(LOGIN)
    assert blocker.read_text() == "not a folder"


async def test_failed_write_keeps_the_previous_login(tmp_path: Path) -> None:
    """If the new file cannot be moved into place, the old login is unchanged."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    await storage.write_auth(LOGIN)
    (tmp_path / "q.json").mkdir()  # a folder where the file should go
    broken = FileSystemAuthStorage(tmp_path, "q")
    with pytest.raises(StorageError, match="unchanged"):
        await broken.write_auth(LOGIN)
    assert await storage.read_auth() == LOGIN
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_on_disk_format_is_the_documented_one(tmp_path: Path) -> None:
    """The file is the versioned JSON documented in the README."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    await storage.write_auth(LOGIN)
    data = json.loads(storage.path.read_text())
    assert set(data) == {
        "version",
        "tokens",
        "account_id",
        "email",
        "token_type",
        "scope",
        "expires_at",
        "last_refresh",
    }
    assert data["tokens"] == {"access_token": "AT", "refresh_token": "RT", "id_token": "ID"}


async def test_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    """A lock held elsewhere for longer than lock_timeout raises StorageError."""
    holder = FileSystemAuthStorage(tmp_path, "p")
    waiter = FileSystemAuthStorage(tmp_path, "p", lock_timeout=0.05)
    async with holder.lock():
        with pytest.raises(StorageError, match="held the lock"):
            async with waiter.lock():
                pass  # pragma: no cover - never entered


def test_list_logins(tmp_path: Path) -> None:
    """Only login files count, not provider files, locks or corrupt copies."""
    for name in ("a.json", "b.json", "a.provider.json", "a.json.lock", "a.json.corrupt-1"):
        (tmp_path / name).write_text("{}")
    assert list_logins(tmp_path) == ["a", "b"]
    assert list_logins(tmp_path / "missing") == []


def os_lock_is_free(storage: FileSystemAuthStorage) -> bool:
    """True when another holder (a fresh FileLock, as another process would) can take the
    lock at once."""
    probe = filelock.FileLock(str(storage.lock_path), is_singleton=False, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return False
    probe.release()
    return True


async def test_cancelled_lock_users_never_leak_the_os_lock(tmp_path: Path) -> None:
    """Three tasks share one storage object and are cancelled at random points of lock()
    (waiting, acquiring in a thread, holding, releasing); 200 rounds. Once the storage has
    settled, the OS lock is free every time."""
    storage = FileSystemAuthStorage(tmp_path, "p", lock_timeout=5)
    rng = random.Random(20261201)

    async def user() -> None:
        async with storage.lock():
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)

    for _ in range(200):
        tasks = [asyncio.create_task(user()) for _ in range(3)]
        for task in tasks:
            for _ in range(rng.randrange(12)):
                await asyncio.sleep(0)  # let the tasks run a random distance into lock()
            task.cancel()
        await asyncio.wait(tasks)
        while storage._in_flight:  # releases that outlived their cancelled callers
            await asyncio.wait(set(storage._in_flight))
        assert await asyncio.to_thread(os_lock_is_free, storage)
    async with storage.lock():  # and the storage object itself still works
        assert not await asyncio.to_thread(os_lock_is_free, storage)


async def test_lock_file_that_is_not_a_file_is_a_storage_error(tmp_path: Path) -> None:
    """A folder where the lock file should be gives a StorageError naming it."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.lock_path.mkdir(parents=True)
    with pytest.raises(StorageError, match="cannot lock"):
        async with storage.lock():
            pass


async def test_changes_yields_when_another_writer_replaces_the_file(tmp_path: Path) -> None:
    """changes() notices a write and a removal made through another storage object."""
    watched = FileSystemAuthStorage(tmp_path, "p")
    other = FileSystemAuthStorage(tmp_path, "p")
    changes = watched.changes(interval=0.01)
    first = asyncio.ensure_future(anext(changes))
    while not first.done():  # until the watcher has both an old and a new reading
        await other.write_auth(LOGIN)
        await asyncio.wait({first}, timeout=0.05)
    await other.clear_auth()
    await anext(changes)
    await changes.aclose()


async def test_a_relogin_by_another_process_reaches_a_running_manager(tmp_path: Path) -> None:
    """A re-login and a logout made through another storage object on the same file (as
    another process would) reach a running manager."""
    await relogin_and_logout_reach_a_manager(
        FileSystemAuthStorage(tmp_path, "p"),
        FileSystemAuthStorage(tmp_path, "p"),
        watch_interval=0.02,
    )


class ObservedStorage(FileSystemAuthStorage):
    """Sets ``blocked`` (thread-safely) when a lock attempt finds the lock taken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blocked = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def _try_lock_sync(self, flock: filelock.FileLock) -> bool:
        taken = super()._try_lock_sync(flock)
        if not taken:
            self._loop.call_soon_threadsafe(self.blocked.set)
        return taken


async def test_the_file_lock_makes_a_second_process_adopt_instead_of_refreshing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two processes (two storage objects, two managers) on one expired login, interleaving
    forced: A's refresh is held at the token endpoint; B then finds the file lock taken; A
    finishes; B adopts A's token. One refresh request in all: without the lock, B would
    spend the same refresh token again."""
    endpoint = FakeTokenEndpoint()
    expired = LOGIN.replace(expires_at=clock.now - 1, last_refresh=clock.now - 3600)
    await FileSystemAuthStorage(tmp_path, "p").write_auth(expired)
    endpoint.gate.clear()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handler)) as http:
        a = manager(FileSystemAuthStorage(tmp_path, "p"), clock, http, watch_interval=None)
        b_storage = ObservedStorage(tmp_path, "p")
        b = manager(b_storage, clock, http, watch_interval=None)
        async with a, b:
            first = asyncio.create_task(a.get_access_token())
            await endpoint.arrived.wait()
            endpoint.arrived.clear()
            second = asyncio.create_task(b.get_access_token())
            blocked = asyncio.ensure_future(b_storage.blocked.wait())
            posted = asyncio.ensure_future(endpoint.arrived.wait())
            await asyncio.wait({blocked, posted}, return_when=asyncio.FIRST_COMPLETED)
            blocked.cancel()
            posted.cancel()
            endpoint.gate.set()
            assert await first == await second == "AT1"
    assert endpoint.calls == 1


def test_default_home_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$VANDAMME_OAUTH_HOME, else $XDG_CONFIG_HOME/vandamme-oauth, else
    ~/.config/vandamme-oauth."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("VANDAMME_OAUTH_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert default_home() == tmp_path / "user" / ".config" / "vandamme-oauth"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "vandamme-oauth"
    monkeypatch.setenv("VANDAMME_OAUTH_HOME", "~/mine")
    assert default_home() == tmp_path / "user" / "mine"
    monkeypatch.setenv("VANDAMME_OAUTH_HOME", "")
    assert default_home() == tmp_path / "xdg" / "vandamme-oauth"
    assert FileSystemAuthStorage(name="p").path == tmp_path / "xdg" / "vandamme-oauth" / "p.json"


async def test_file_storage_messages_say_what_to_do(tmp_path: Path) -> None:
    """The exact messages of the common failures: a corrupt file, a home that cannot be
    created, a lock held too long."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.path.write_bytes(b"{")
    assert await storage_error(storage.read_auth()) == (
        f"the auth file {storage.path} is unreadable (not valid JSON); it was left untouched: "
        "log in again to replace it, or restore it from a backup"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StorageError) as home:
        await FileSystemAuthStorage(blocker / "home", "p").write_auth(LOGIN)
    assert str(home.value) == (
        f"cannot create the folder {blocker / 'home'}: Not a directory; "
        "pick a writable folder with --home or VANDAMME_OAUTH_HOME"
    )
    holder = FileSystemAuthStorage(tmp_path, "q")
    waiter = FileSystemAuthStorage(tmp_path, "q", lock_timeout=0.01)
    async with holder.lock():
        with pytest.raises(StorageError) as held:
            async with waiter.lock():
                pass  # pragma: no cover - never entered
    assert str(held.value) == (
        f"another process has held the lock {waiter.lock_path} for over 0.01 s; "
        "is a refresh hanging?"
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert await storage_error(FileSystemAuthStorage(shared, "p").ensure_home()) == (
        f"the folder {shared} can be written by other users, who could replace the login "
        "stored there; pick a private folder with --home or VANDAMME_OAUTH_HOME, or run "
        f"'chmod go-w {shared}'"
    )


async def test_a_corrupt_file_that_cannot_be_moved_aside_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing over an unreadable file first moves it aside; if that fails, the write
    fails with one line saying so, and the unreadable file is still there, unchanged."""
    storage = FileSystemAuthStorage(tmp_path, "p", foreign_write_grace=0)
    storage.path.write_bytes(b"{")
    link = os.link

    def refuse_corrupt_moves(src: Any, dst: Any) -> None:
        if ".corrupt-" in str(dst):
            raise PermissionError(13, "Permission denied")
        link(src, dst)

    monkeypatch.setattr(os, "link", refuse_corrupt_moves)
    assert await storage_error(storage.write_auth(LOGIN)) == (
        f"cannot write {storage.path}: Permission denied; the previous login is unchanged"
    )
    assert storage.path.read_bytes() == b"{"


async def test_the_home_is_created_private_not_made_private_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The home is created 0700 by mkdir itself (the chmod after it only undoes the umask):
    there is no moment when it is open to others."""
    monkeypatch.setattr(type(tmp_path), "chmod", lambda self, mode: None)
    home = tmp_path / "home"
    old = os.umask(0o022)
    try:
        await FileSystemAuthStorage(home, "p").ensure_home()
    finally:
        os.umask(old)
    assert mode(home) == 0o700


async def test_the_watcher_takes_a_reference_before_it_compares(tmp_path: Path) -> None:
    """changes(): the first stat is a reference; scans of an unchanged file yield nothing,
    a changed one yields."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    await storage.write_auth(LOGIN)
    changes = storage.changes(interval=0)
    pending = asyncio.ensure_future(anext(changes))
    watcher = home_watcher(tmp_path, 0)
    try:
        while watcher.scans < 3:
            await watcher.scanned.wait()
        assert not pending.done()  # the reference and unchanged scans
        await storage.write_auth(LOGIN.replace(access_token="AT2"))
        await pending
    finally:
        pending.cancel()
        await asyncio.wait({pending})
        await changes.aclose()


def test_the_old_provider_keyword_still_works_with_a_deprecation_warning(
    tmp_path: Path,
) -> None:
    """`provider=` was the login's name under a misleading word: it keeps working, warns,
    and names the replacement."""
    with pytest.warns(DeprecationWarning, match=r"use name=\.\.\.") as caught:
        storage = FileSystemAuthStorage(tmp_path, provider="work")
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines add a stack frame
        assert caught[0].filename == __file__  # the warning points at the caller
    assert storage.name == "work"
    assert storage.path == tmp_path / "work.json"
    assert FileSystemAuthStorage(tmp_path, "work").path == storage.path
    assert FileSystemAuthStorage(tmp_path, name="work").path == storage.path


async def test_remember_provider_saves_the_profile_privately_and_atomically(
    tmp_path: Path,
) -> None:
    """The profile lands beside the login, 0600 in a 0700 home, as the JSON given, and is
    replaced whole (no temp file left)."""
    home = tmp_path / "home"
    storage = FileSystemAuthStorage(home, "work")
    await storage.remember_provider({"name": "work", "issuer": "https://a"})
    await storage.remember_provider({"name": "work", "issuer": "https://b"})
    assert storage.profile_path.read_text() == json.dumps(
        {"name": "work", "issuer": "https://b"}, indent=2
    )
    assert storage.profile_path.stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in home.iterdir()) == ["work.provider.json"]


def test_defaults_name_format_and_repr(tmp_path: Path) -> None:
    """The default login is chatgpt, the lock waits 60 s, the repr names the file, and the
    file is 2-space-indented JSON ending in a newline; list_logins checks whole names."""
    storage = FileSystemAuthStorage(tmp_path)
    assert (storage.path.name, storage.lock_timeout) == ("chatgpt.json", 60.0)
    assert repr(storage) == f"FileSystemAuthStorage(path={str(storage.path)!r})"
    asyncio.run(storage.write_auth(LOGIN))
    assert storage.path.read_text() == json.dumps(LOGIN.to_dict(), indent=2) + "\n"
    (tmp_path / "valid$bad.json").write_text("{}")  # its first characters would pass
    (tmp_path / "chatgpt.provider.json").write_text("{}")
    assert list_logins(tmp_path) == ["chatgpt"]
    with pytest.warns(DeprecationWarning, match="deprecated") as caught:
        FileSystemAuthStorage(tmp_path, provider="x")
    assert str(caught[0].message) == (
        "FileSystemAuthStorage(provider=...) is deprecated: the argument is the login's "
        "name; use name=..."
    )


async def test_a_symlinked_lock_alone_is_refused_before_the_login(tmp_path: Path) -> None:
    """ensure_home() refuses a home whose lock file (even alone) is a symbolic link, with the
    whole reason; a home others can write to is refused with the command that fixes it."""
    storage = FileSystemAuthStorage(tmp_path / "home", "p")
    await storage.ensure_home()
    storage.lock_path.symlink_to(tmp_path / "elsewhere")
    assert await storage_error(storage.ensure_home()) == (
        f"{storage.path} or its lock file is a symbolic link; remove it, or pick another "
        "folder with --home"
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    message = await storage_error(FileSystemAuthStorage(shared, "p").ensure_home())
    assert message.endswith(f"or run 'chmod go-w {shared}'")


async def test_filesystem_errors_name_the_path_and_the_reason(tmp_path: Path) -> None:
    """A folder where the login file should be: reading, writing and deleting each fail
    with a StorageError naming the path and the system's reason; no temp file remains."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    storage.path.mkdir()
    assert await storage_error(storage.read_auth()) == (
        f"cannot read {storage.path}: Is a directory"
    )
    assert await storage_error(storage.write_auth(LOGIN)) == (
        f"cannot write {storage.path}: Is a directory; the previous login is unchanged"
    )
    assert await storage_error(storage.clear_auth()) == (
        f"cannot delete {storage.path}: Is a directory"
    )
    # The lock file stays (the delete took the lock, as every logout does); no temp file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "p.json.lock"]


async def test_clear_removes_leftovers_even_without_a_login(tmp_path: Path) -> None:
    """Temp files of a killed first write are removed even when no login file exists."""
    storage = FileSystemAuthStorage(tmp_path, "p")
    leftover = tmp_path / ".p.json.123.456.tmp"
    leftover.write_text("tokens")
    await storage.clear_auth()
    assert not leftover.exists()


async def test_a_write_syncs_the_folder_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On POSIX the folder is fsync'd after the rename, so the new name survives a crash."""
    synced: list[bool] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    await FileSystemAuthStorage(tmp_path, "p").write_auth(LOGIN)
    assert synced == [False, True]  # the temp file, then the folder


def test_the_file_watch_polls_every_half_second_by_default(tmp_path: Path) -> None:
    """The documented cadence of the file backend's change notifications: 0.5 s."""
    import inspect

    changes = FileSystemAuthStorage(tmp_path, "p").changes
    assert inspect.signature(changes).parameters["interval"].default == 0.5
