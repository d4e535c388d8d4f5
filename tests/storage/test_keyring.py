"""KeyringAuthStorage with real keyring backends: round trip, and a hanging keyring that
must time out and fall back to the file, announced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keyring.backends.null
import pytest
from keyrings.alt.file import PlaintextKeyring

from tests.storage.test_contract import LOGIN
from tests.support.keyrings import HangingKeyring, LockedKeyring
from vandamme_oauth import AuthData, FileSystemAuthStorage, KeyringAuthStorage, StorageError
from vandamme_oauth.storage._base import store_login


@pytest.fixture
def hanging() -> Iterator[HangingKeyring]:
    backend = HangingKeyring()
    yield backend
    backend.release.set()  # let the abandoned threads finish


def plaintext(tmp_path: Path) -> PlaintextKeyring:
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    return backend


async def test_round_trip_in_a_real_keyring_backend(tmp_path: Path) -> None:
    """The login is stored in the keyring, not in the fallback file."""
    fallback = FileSystemAuthStorage(tmp_path / "home", "k")
    storage = KeyringAuthStorage("k", backend=plaintext(tmp_path), fallback=fallback)
    assert await storage.read_auth() is None
    await storage.write_auth(LOGIN)
    assert await storage.read_auth() == LOGIN
    assert await fallback.read_auth() is None
    assert storage.fallback_reason is None
    await storage.clear_auth()
    assert await storage.read_auth() is None


async def test_hanging_keyring_times_out_and_falls_back_loudly(
    tmp_path: Path, hanging: HangingKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    """A keyring that never answers costs one timeout, then the file is used, announced."""
    told: list[str] = []
    fallback = FileSystemAuthStorage(tmp_path / "home", "k")
    storage = KeyringAuthStorage(
        "k", backend=hanging, timeout=0.05, fallback=fallback, on_fallback=told.append
    )
    await storage.write_auth(LOGIN)
    assert await storage.read_auth() == LOGIN
    assert await fallback.read_auth() == LOGIN
    assert storage.fallback_reason is not None
    assert "did not answer" in storage.fallback_reason
    assert len(told) == 1
    assert str(fallback.path) in told[0]
    assert any("keyring unusable" in r.getMessage() for r in caplog.records)
    assert "fallback" in repr(storage)


async def test_locked_keyring_falls_back(tmp_path: Path) -> None:
    """A keyring error (locked collection) falls back at once."""
    storage = KeyringAuthStorage(
        "k", backend=LockedKeyring(), fallback=FileSystemAuthStorage(tmp_path, "k")
    )
    assert await storage.read_auth() is None
    assert storage.fallback_reason is not None
    assert "KeyringLocked" in storage.fallback_reason


async def test_corrupt_keyring_entry(tmp_path: Path) -> None:
    """A keyring entry that is not our JSON is a StorageError."""
    backend = plaintext(tmp_path)
    backend.set_password("vandamme-oauth", "k", "{nope")
    storage = KeyringAuthStorage(
        "k", backend=backend, fallback=FileSystemAuthStorage(tmp_path, "k")
    )
    with pytest.raises(StorageError, match="unreadable"):
        await storage.read_auth()


async def test_lock_is_the_fallback_file_lock(tmp_path: Path) -> None:
    """lock() excludes other processes through the file lock beside the fallback file."""
    fallback = FileSystemAuthStorage(tmp_path, "k", lock_timeout=0.05)
    storage = KeyringAuthStorage("k", backend=plaintext(tmp_path), fallback=fallback)
    async with storage.lock():
        with pytest.raises(StorageError, match="held the lock"):
            async with FileSystemAuthStorage(tmp_path, "k", lock_timeout=0.05).lock():
                pass  # pragma: no cover


def test_cli_does_not_hang_on_a_hanging_keyring(tmp_path: Path) -> None:
    """`vandamme-oauth --keyring token` with a keyring that never answers: the CLI announces
    the fallback and prints the token from the file instead of hanging."""
    import asyncio
    import json
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    asyncio.run(
        FileSystemAuthStorage(home, "chatgpt").write_auth(LOGIN.replace(expires_at=4_000_000_000.0))
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "tests.support.keyrings.HangingKeyring",
        "PYTHONPATH": str(root),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vandamme_oauth",
            "token",
            "chatgpt",
            "--keyring",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == LOGIN.access_token
    assert "keyring is unusable" in done.stderr
    assert str(home / "chatgpt.json") in done.stderr
    assert json.loads((home / "chatgpt.json").read_text())["version"] == 1


async def test_a_new_login_keeps_its_profile_beside_the_fallback_file(tmp_path: Path) -> None:
    """store_login into the keyring: the tokens go to the keyring, the profile (no secrets)
    beside the fallback file, where the CLI looks for it; the profile is written first."""
    fallback = FileSystemAuthStorage(tmp_path / "home", "k")
    order: list[str] = []

    class Watching(KeyringAuthStorage):
        async def write_auth(self, data: AuthData) -> None:
            order.append("tokens" if not fallback.profile_path.exists() else "profile, tokens")
            await super().write_auth(data)

    storage = Watching("k", backend=plaintext(tmp_path), fallback=fallback)
    await store_login(storage, LOGIN, {"name": "k"})
    assert order == ["profile, tokens"]
    assert json.loads(fallback.profile_path.read_text()) == {"name": "k"}
    assert await storage.read_auth() == LOGIN
    assert await fallback.read_auth() is None


async def test_a_keyring_that_keeps_nothing_is_no_keyring(tmp_path: Path) -> None:
    """keyring's "null" backend accepts writes and forgets them: the login goes to the file,
    said once, instead of being lost."""
    told: list[str] = []
    fallback = FileSystemAuthStorage(tmp_path, "k")
    null = keyring.backends.null.Keyring()  # type: ignore[no-untyped-call]
    storage = KeyringAuthStorage("k", backend=null, fallback=fallback, on_fallback=told.append)
    await storage.write_auth(LOGIN)
    assert await fallback.read_auth() == LOGIN
    assert await storage.read_auth() == LOGIN
    assert told == [
        f"The OS keyring is unusable (keyring.backends.null keeps no passwords); using "
        f"{fallback.path} instead."
    ]
