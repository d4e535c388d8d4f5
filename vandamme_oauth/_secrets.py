"""Client secrets of the CLI's logins in the OS keyring, when one is available.

A registration's secrets (the client secret, the RFC 7592 management token) and a secret
given with ``--client-secret-stdin`` go to the OS keyring when there is one; otherwise they
stay in the login's 0600 registration file. "An OS keyring" is the backend the ``keyring``
package (the ``keyring`` extra) picks when it ranks it as recommended (priority 1 or more:
Secret Service, KWallet, macOS Keychain, Windows Credential Locker), or any backend the user
configured explicitly (``PYTHON_KEYRING_BACKEND`` or keyring's own config file), except
keyring's "null" and "fail" backends. Without the package, or with only those and keyring's
plaintext file, the login's file is the place and nothing is said. A keyring that is there
but fails (locked, or silent for ``TIMEOUT`` seconds) is reported by the caller once, and
the file is used.

Every function here blocks: call them in a worker thread. Each keyring call runs in a daemon
thread of its own, so a keyring that never answers cannot keep the process alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    import keyring.backend

__all__ = [
    "SERVICE",
    "KeyringUnusable",
    "delete_secrets",
    "keeps_nothing",
    "os_keyring",
    "read_secrets",
    "store_secrets",
]

#: The keyring service the CLI's secrets are kept under (the tokens' service too).
SERVICE = "vandamme-oauth"
#: Seconds a keyring call may take before the keyring counts as unusable.
TIMEOUT = 3.0

T = TypeVar("T")


class KeyringUnusable(Exception):
    """The keyring failed or did not answer; the message says how."""


def _within(fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread, given up on after ``TIMEOUT`` seconds."""
    timeout = TIMEOUT
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="vandamme-oauth-keyring", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise KeyringUnusable(f"the keyring did not answer within {timeout:g} s")
    if "error" in outcome:
        error: BaseException = outcome["error"]
        raise KeyringUnusable(f"{type(error).__name__}: {error}") from error
    value: T = outcome["value"]
    return value


def os_keyring() -> keyring.backend.KeyringBackend | None:
    """The OS keyring to keep secrets in, or None when there is none (see the module)."""
    try:
        import keyring
        import keyring.core
    except ImportError:
        return None

    def choose() -> keyring.backend.KeyringBackend | None:
        backend = keyring.get_keyring()
        if keeps_nothing(backend):
            return None
        explicit = bool(os.environ.get("PYTHON_KEYRING_BACKEND")) or (
            keyring.core.load_config() is not None
        )
        return backend if explicit or backend.priority >= 1 else None

    try:
        return _within(choose)
    except KeyringUnusable:
        return None  # no backend could even be chosen: there is no keyring to speak of


def keeps_nothing(backend: keyring.backend.KeyringBackend) -> bool:
    """Whether ``backend`` is keyring's "null" or "fail" backend: no keyring at all (the
    first accepts writes and forgets them, the second refuses everything)."""
    import keyring.backends.fail
    import keyring.backends.null

    return isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring)


def _username(name: str) -> str:
    return f"{name}:client"


def store_secrets(
    backend: keyring.backend.KeyringBackend,
    name: str,
    secrets: dict[str, str],
) -> None:
    """Keep login ``name``'s client secrets in ``backend``.

    Raises:
        KeyringUnusable: the keyring refused or did not answer.
    """
    payload = json.dumps(secrets)
    _within(lambda: backend.set_password(SERVICE, _username(name), payload))


def read_secrets(name: str) -> dict[str, str]:
    """Login ``name``'s client secrets from the OS keyring ({} if none are there).

    Raises:
        KeyringUnusable: there is no keyring now, it refused, did not answer, or holds
            something that is not ours.
    """
    backend = os_keyring()
    if backend is None:
        raise KeyringUnusable("no OS keyring is available now")
    raw = _within(lambda: backend.get_password(SERVICE, _username(name)))
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise KeyringUnusable(f"the keyring entry {SERVICE}/{_username(name)} is not ours")
    return data


def delete_secrets(name: str) -> str | None:
    """Forget login ``name``'s client secrets in the OS keyring (nothing there is not an
    error); None when they are gone, else why the keyring could not be asked."""
    backend = os_keyring()
    if backend is None:
        return "no OS keyring is available now"

    def delete() -> None:
        import keyring.errors

        with contextlib.suppress(keyring.errors.PasswordDeleteError):  # nothing stored
            backend.delete_password(SERVICE, _username(name))

    try:
        _within(delete)
    except KeyringUnusable as exc:
        return str(exc)
    return None
