"""Keyring backends that misbehave like real ones do on headless machines."""

from __future__ import annotations

import threading

import keyring.backend
import keyring.errors


class HangingKeyring(keyring.backend.KeyringBackend):
    """Never answers, like a locked Secret Service waiting on a prompt nobody sees."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait()

    def delete_password(self, service: str, username: str) -> None:
        self.release.wait()


class LockedKeyring(HangingKeyring):
    """Refuses at once."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("the collection is locked")


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An OS-grade keyring (priority 5) that keeps its entries in this process."""

    priority = 5

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


class RefusingKeyring(MemoryKeyring):
    """Chosen like an OS keyring, but refuses every write (a locked collection)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("the collection is locked")
