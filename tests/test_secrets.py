"""Client secrets of the CLI's logins: in the OS keyring when there is one, else in the 0600
registration file; a keyring that fails is said once and loses nothing."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import keyring
import keyring.backends.null
import keyrings.alt.file
import pytest

from tests.support.keyrings import HangingKeyring, MemoryKeyring, RefusingKeyring
from vandamme_oauth import Registration, StorageError
from vandamme_oauth._profiles import delete_provider, load_registration, save_registration
from vandamme_oauth._secrets import (
    SERVICE,
    KeyringUnusable,
    delete_secrets,
    os_keyring,
    read_secrets,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import keyring.backend

REGISTRATION = Registration(
    client_id="c1",
    client_secret="S3CRET",
    client_secret_expires_at=4_000_000_000.0,
    registration_access_token="RAT",
    registration_client_uri="https://as.example/reg/c1",
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("authorization_code", "refresh_token"),
)


@pytest.fixture
def use_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Make ``keyring.get_keyring()`` answer with the backend the test sets (restored)."""
    previous = keyring.get_keyring()
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setattr("keyring.core.load_config", lambda: None)

    def use(backend: keyring.backend.KeyringBackend) -> keyring.backend.KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


def test_only_a_recommended_or_configured_backend_counts_as_an_os_keyring(
    use_keyring: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Keyring's plaintext file (priority 0.5) is no OS keyring, unless the user chose it."""
    memory = use_keyring(MemoryKeyring())  # type: ignore[operator]
    assert os_keyring() is memory
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    plaintext = use_keyring(keyrings.alt.file.PlaintextKeyring())  # type: ignore[operator]
    assert os_keyring() is None
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    assert os_keyring() is plaintext


def test_keyrings_null_backend_is_no_keyring_even_when_chosen(
    use_keyring: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It accepts writes and forgets them: a secret kept there would be lost."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    use_keyring(keyring.backends.null.Keyring())  # type: ignore[operator,no-untyped-call]
    assert os_keyring() is None
    with pytest.raises(KeyringUnusable, match=r"^no OS keyring is available now$"):
        read_secrets("work")
    assert delete_secrets("work") == "no OS keyring is available now"


def test_a_keyring_that_never_answers_is_unusable_within_the_timeout(
    use_keyring: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vandamme_oauth._secrets.TIMEOUT", 0.05)
    hanging = HangingKeyring()
    use_keyring(hanging)  # type: ignore[operator]
    try:
        with pytest.raises(KeyringUnusable, match=r"^the keyring did not answer within 0\.05 s$"):
            read_secrets("work")
        assert delete_secrets("work") == "the keyring did not answer within 0.05 s"
    finally:
        hanging.release.set()


def test_an_entry_that_is_not_ours_is_refused(use_keyring: object) -> None:
    memory: MemoryKeyring = use_keyring(MemoryKeyring())  # type: ignore[operator]
    for foreign in ("not json", "[1, 2]", '{"client_secret": 7}'):
        memory.entries[(SERVICE, "work:client")] = foreign
        with pytest.raises(
            KeyringUnusable, match=r"^the keyring entry vandamme-oauth/work:client is not ours$"
        ):
            read_secrets("work")
    assert read_secrets("other") == {}
    assert delete_secrets("other") is None  # nothing stored: not an error


async def test_secrets_go_to_the_keyring_and_the_file_keeps_the_rest(
    use_keyring: object, tmp_path: Path
) -> None:
    memory: MemoryKeyring = use_keyring(MemoryKeyring())  # type: ignore[operator]
    said: list[str] = []
    await save_registration(tmp_path, "files", REGISTRATION, on_fallback=said.append)
    path = tmp_path / "files.registration"
    text = path.read_text()
    assert "S3CRET" not in text
    assert "RAT" not in text
    assert json.loads(text) == {**REGISTRATION.to_dict(), "secrets": "keyring"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(memory.entries[(SERVICE, "files:client")]) == {
        "client_secret": "S3CRET",
        "registration_access_token": "RAT",
    }
    assert said == []
    assert await load_registration(tmp_path, "files") == REGISTRATION
    assert await delete_provider(tmp_path, "files") is None
    assert memory.entries == {}
    assert not path.exists()


async def test_a_registration_without_secrets_leaves_the_keyring_alone(
    use_keyring: object, tmp_path: Path
) -> None:
    memory: MemoryKeyring = use_keyring(MemoryKeyring())  # type: ignore[operator]
    public = Registration(client_id="c2", grant_types=("authorization_code",))
    await save_registration(tmp_path, "pub", public)
    assert memory.entries == {}
    assert "secrets" not in json.loads((tmp_path / "pub.registration").read_text())
    assert await load_registration(tmp_path, "pub") == public


async def test_without_an_os_keyring_the_secrets_stay_in_the_0600_file_silently(
    use_keyring: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    use_keyring(keyrings.alt.file.PlaintextKeyring())  # type: ignore[operator]
    said: list[str] = []
    await save_registration(tmp_path, "files", REGISTRATION, on_fallback=said.append)
    assert said == []
    assert "S3CRET" in (tmp_path / "files.registration").read_text()
    assert not (tmp_path / "data").exists()  # nothing went to keyring's plaintext file
    assert await load_registration(tmp_path, "files") == REGISTRATION


async def test_a_keyring_that_refuses_is_said_once_and_the_file_holds_the_secrets(
    use_keyring: object, tmp_path: Path
) -> None:
    use_keyring(RefusingKeyring())  # type: ignore[operator]
    said: list[str] = []
    await save_registration(tmp_path, "files", REGISTRATION, on_fallback=said.append)
    path = tmp_path / "files.registration"
    assert said == [
        "The OS keyring is unusable (KeyringLocked: the collection is locked); keeping "
        f"the client's secrets in {path}."
    ]
    assert await load_registration(tmp_path, "files") == REGISTRATION


async def test_secrets_in_a_keyring_that_went_away_are_one_clear_error(
    use_keyring: object, tmp_path: Path
) -> None:
    use_keyring(MemoryKeyring())  # type: ignore[operator]
    await save_registration(tmp_path, "files", REGISTRATION)
    hanging = HangingKeyring()
    use_keyring(hanging)  # type: ignore[operator]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("vandamme_oauth._secrets.TIMEOUT", 0.05)
            with pytest.raises(StorageError, match="unlock the keyring and run the command"):
                await load_registration(tmp_path, "files")
            reason = await delete_provider(tmp_path, "files")
    finally:
        hanging.release.set()
    assert reason is not None
    assert not (tmp_path / "files.registration").exists()


def test_the_keyring_thread_is_a_daemon(
    use_keyring: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyring that never answers cannot keep the process alive."""
    monkeypatch.setattr("vandamme_oauth._secrets.TIMEOUT", 0.01)
    hanging = HangingKeyring()
    use_keyring(hanging)  # type: ignore[operator]
    try:
        with pytest.raises(KeyringUnusable):
            read_secrets("work")
        threads = [t for t in threading.enumerate() if t.name == "vandamme-oauth-keyring"]
        assert threads
        assert all(t.daemon for t in threads)
    finally:
        hanging.release.set()
