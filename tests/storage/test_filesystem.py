"""FileSystemAuthStorage: permissions, atomic writes, corrupt files and unwritable homes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

from tests.storage.test_contract import LOGIN
from vandamme_oauth import FileSystemAuthStorage, StorageError
from vandamme_oauth.storage import list_logins

if TYPE_CHECKING:
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_files_are_private(tmp_path: Path) -> None:
    """The folder is 0700 (tightened if it existed looser) and the file 0600."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    storage = FileSystemAuthStorage(str(home), "p")
    await storage.write_auth(LOGIN)
    assert mode(home) == 0o700
    assert mode(storage.path) == 0o600
    assert storage.path == home / "p.json"


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
