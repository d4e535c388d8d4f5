"""What the CLI's commands share: where logins live, how to name the fix, how to wait.

Every message the CLI prints is one line that says what happened and, when the user has
something to do, the exact command to run. Logins are found in the home folder: a
``{name}.json`` file, or a ``{name}.provider.json`` profile (keyring logins keep no file).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from typing import TYPE_CHECKING

import anyio.to_thread

from ._exceptions import NotAuthenticatedError, ValidationError
from ._profiles import load_provider
from .storage._filesystem import FileSystemAuthStorage, list_logins
from .storage._keyring import KeyringAuthStorage

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator
    from pathlib import Path

    from ._provider import ProviderConfig
    from .storage._base import AuthStorage

__all__ = [
    "known_logins",
    "login_command",
    "make_storage",
    "pick_name",
    "progress",
    "provider_for",
    "say",
    "where",
]


def say(text: str) -> None:
    """One line for the user on stderr (notices, waits, refusals)."""
    print(text, file=sys.stderr, flush=True)


def make_storage(args: argparse.Namespace, home: Path, name: str) -> AuthStorage:
    """The login's storage: the file in ``home``, or the OS keyring with that file as its
    announced fallback (``--keyring``)."""
    file = FileSystemAuthStorage(home, name)
    if getattr(args, "keyring", False):
        return KeyringAuthStorage(name, fallback=file, on_fallback=say)
    return file


def where(storage: AuthStorage) -> str:
    """Where a login lives, for messages (never a secret)."""
    if isinstance(storage, KeyringAuthStorage):
        if storage.fallback_reason is None:
            return f"the OS keyring ({storage.service}/{storage.name})"
        return str(storage.fallback.path)
    return str(getattr(storage, "path", storage))


def login_command(args: argparse.Namespace, name: str) -> str:
    """The command that logs in to login ``name`` again, with the options it needs here:
    ``vandamme-oauth login work`` (the saved profile holds issuer, client, scopes)."""
    return shlex.join(["vandamme-oauth", "login", name, *_where_options(args)])


def new_login_command(args: argparse.Namespace, name: str) -> str:
    """The command that creates login ``name`` here (there is no profile to reuse)."""
    return "vandamme-oauth login --issuer URL --client-id ID " + shlex.join(
        ["--name", name, *_where_options(args)]
    )


def _where_options(args: argparse.Namespace) -> list[str]:
    """``--home`` and ``--keyring`` as the user gave them (nothing when they did not)."""
    options = []
    if getattr(args, "home", None) is not None:
        options += ["--home", str(args.home)]
    if getattr(args, "keyring", False):
        options.append("--keyring")
    return options


def _known_logins_sync(home: Path) -> list[str]:
    if not home.is_dir():
        return []
    saved = {p.name[: -len(".provider.json")] for p in home.glob("*.provider.json")}
    return sorted(set(list_logins(home)) | saved)


async def known_logins(home: Path) -> list[str]:
    """Logins with a file, or with a saved provider (keyring logins keep no file)."""
    return await anyio.to_thread.run_sync(_known_logins_sync, home)


async def pick_name(home: Path, name: str | None) -> str:
    """``name``, or the only login stored in ``home``.

    Raises:
        NotAuthenticatedError: nothing is stored.
        ValidationError: several logins are stored and none was named.
    """
    if name:
        return name
    names = await known_logins(home)
    if not names:
        raise NotAuthenticatedError(
            f"no login stored in {home}; run: vandamme-oauth login chatgpt "
            "(or: vandamme-oauth login --issuer URL --client-id ID)"
        )
    if len(names) > 1:
        raise ValidationError(f"several logins are stored ({', '.join(names)}); name one")
    return names[0]


async def provider_for(args: argparse.Namespace, home: Path, name: str) -> ProviderConfig:
    """The saved provider of login ``name``.

    Raises:
        NotAuthenticatedError: there is no such login, or it has no saved provider (the
            message ends with the command that creates it, with the options given).
    """
    provider = await load_provider(home, name)
    if provider is None:
        raise NotAuthenticatedError(
            f"no login named {name!r} in {home} (no {name}.provider.json); "
            f"create it with: {new_login_command(args, name)}"
        )
    return provider


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextlib.asynccontextmanager
async def progress(text: str, *, total: float) -> AsyncIterator[None]:
    """Show a wait: on a terminal, one line updated every second with the elapsed and the
    remaining time (erased when the wait ends); otherwise one plain line."""
    if not sys.stderr.isatty():
        say(f"{text} (up to {total:g} s; press Ctrl-C to cancel)...")
        yield
        return
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def tick() -> None:
        while True:
            elapsed = loop.time() - start
            sys.stderr.write(
                f"\r\x1b[K{text}: {_clock(elapsed)} elapsed, {_clock(total - elapsed)} left "
                "(Ctrl-C to cancel)"
            )
            sys.stderr.flush()
            await asyncio.sleep(1 - (elapsed % 1))

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])  # never raises: a Ctrl-C of ours stays ours
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
