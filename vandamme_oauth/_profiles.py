"""Saved provider configurations beside the logins: ``{home}/{name}.provider.json``.

The login flows store the provider of each login they make (through the storage's
``remember_provider``), so ``status``, ``token`` and ``logout`` know the endpoints without
discovering them again. Files hold no secrets but are still 0600.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio.to_thread

from ._exceptions import StorageError, ValidationError
from ._provider import ProviderConfig

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["delete_provider", "load_provider"]


def _path(home: Path, name: str) -> Path:
    return home / f"{name}.provider.json"


def _load_sync(home: Path, name: str) -> ProviderConfig | None:
    path = _path(home, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if name == "chatgpt":
            return ProviderConfig.chatgpt()
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the provider file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StorageError(f"the provider file {path} is not a JSON object")
    try:
        return ProviderConfig.from_dict(data)
    except ValidationError as exc:
        raise StorageError(f"the provider file {path} is invalid: {exc.message}") from None


async def delete_provider(home: Path, name: str) -> None:
    """Forget the saved provider of login ``name`` (no error if there is none)."""
    await anyio.to_thread.run_sync(lambda: _path(home, name).unlink(missing_ok=True))


async def load_provider(home: Path, name: str) -> ProviderConfig | None:
    """The saved provider of login ``name`` (the ChatGPT preset for ``chatgpt``), or None."""
    return await anyio.to_thread.run_sync(_load_sync, home, name)
