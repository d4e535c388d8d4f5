"""Storage backends: the AuthStorage protocol, AuthData and the memory and file backends."""

from ._base import FORMAT_VERSION as FORMAT_VERSION
from ._base import AuthData as AuthData
from ._base import AuthStorage as AuthStorage
from ._codex import CodexAuthStorage as CodexAuthStorage
from ._filesystem import FileSystemAuthStorage as FileSystemAuthStorage
from ._filesystem import default_home as default_home
from ._filesystem import list_logins as list_logins
from ._keyring import KeyringAuthStorage as KeyringAuthStorage
from ._memory import InMemoryAuthStorage as InMemoryAuthStorage

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
