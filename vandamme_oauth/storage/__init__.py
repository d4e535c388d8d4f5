"""Storage backends: the AuthStorage protocol, AuthData and the memory and file backends
(the Codex file and keyring backends load on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import FORMAT_VERSION as FORMAT_VERSION
from ._base import AuthData as AuthData
from ._base import AuthStorage as AuthStorage
from ._filesystem import FileSystemAuthStorage as FileSystemAuthStorage
from ._filesystem import default_home as default_home
from ._filesystem import list_logins as list_logins
from ._memory import InMemoryAuthStorage as InMemoryAuthStorage

if TYPE_CHECKING:
    from ._codex import CodexAuthStorage as CodexAuthStorage
    from ._keyring import KeyringAuthStorage as KeyringAuthStorage

__all__ = [
    "FORMAT_VERSION",
    "AuthData",
    "AuthStorage",
    "CodexAuthStorage",
    "FileSystemAuthStorage",
    "InMemoryAuthStorage",
    "KeyringAuthStorage",
    "default_home",
    "list_logins",
]


def __getattr__(name: str) -> Any:
    # The Codex file (a ChatGPT dialect) and the keyring backend load on first use.
    if name == "CodexAuthStorage":
        from ._codex import CodexAuthStorage

        return CodexAuthStorage
    if name == "KeyringAuthStorage":
        from ._keyring import KeyringAuthStorage

        return KeyringAuthStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
