"""The ``vandamme-oauth`` command: login, status, logout, token.

``main(argv)`` parses arguments, runs one coroutine with ``asyncio.run`` and maps every
:class:`OAuthError` to a one-line reason on stderr and exit code 1 (2 for usage errors,
130 for Ctrl-C). Nothing here prints a token except ``token``, whose job it is.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from ._cli_login import add_login_arguments, login, make_storage, where
from ._exceptions import NotAuthenticatedError, OAuthError, ValidationError
from ._profiles import delete_provider, load_provider
from ._token_client import TokenClient
from ._token_manager import TokenManager
from .storage._filesystem import default_home, list_logins

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._provider import ProviderConfig
    from .storage._base import AuthData

__all__ = ["main"]

_STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _ExtraFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` with the record's structured ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder holding the logins "
        "(default: $VANDAMME_OAUTH_HOME or ~/.config/vandamme-oauth)",
    )
    common.add_argument(
        "--keyring",
        action="store_true",
        default=argparse.SUPPRESS,
        help="keep tokens in the OS keyring (falls back to the file, announced, if unusable)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log steps (-vv: debug)"
    )
    parser = argparse.ArgumentParser(
        prog="vandamme-oauth",
        description="Sign in with OAuth 2.0 + PKCE and keep the tokens fresh.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = sub.add_parser("login", parents=[common], help="sign in (browser, paste or device)")
    add_login_arguments(login)
    for name, text in (
        ("status", "show stored logins (no secrets)"),
        ("logout", "revoke (best effort) and delete a login"),
        ("token", "print a valid access token, refreshing it if needed"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name", nargs="?", help="the login's name")
    return parser


def _when(ts: float | None) -> str:
    if ts is None:
        return "unknown"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relative(seconds: float) -> str:
    minutes = int(abs(seconds) // 60)
    text = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


async def _provider_for(home: Path, name: str) -> ProviderConfig:
    provider = await load_provider(home, name)
    if provider is None:
        raise NotAuthenticatedError(f"no login named {name!r} in {home}")
    return provider


async def _pick_name(home: Path, name: str | None) -> str:
    if name:
        return name
    names = await anyio.to_thread.run_sync(_known_logins, home)
    if not names:
        raise NotAuthenticatedError(f"no login stored in {home}; run 'vandamme-oauth login'")
    if len(names) > 1:
        raise ValidationError(f"several logins are stored ({', '.join(names)}); name one")
    return names[0]


def _known_logins(home: Path) -> list[str]:
    """Logins with a file, or with a saved provider (keyring logins keep no file)."""
    saved = {p.name[: -len(".provider.json")] for p in home.glob("*.provider.json")}
    return sorted(set(list_logins(home)) | saved) if home.is_dir() else []


def _describe(name: str, auth: AuthData, path: str, now: float) -> str:
    expires = (
        "unknown"
        if auth.expires_at is None
        else f"{_relative(auth.expires_at - now)} ({_when(auth.expires_at)})"
    )
    return "\n".join(
        [
            name,
            f"  account:      {auth.account_id or 'unknown'}"
            + (f" ({auth.email})" if auth.email else ""),
            f"  expires:      {expires}",
            f"  last refresh: {_when(auth.last_refresh)}",
            f"  refreshable:  {'yes' if auth.refresh_token else 'no'}",
            f"  storage:      {path}",
        ]
    )


async def _status(args: argparse.Namespace, home: Path) -> int:
    names = [args.name] if args.name else await anyio.to_thread.run_sync(_known_logins, home)
    if not names:
        print(f"No logins stored in {home}.")
        return 1
    failed = 0
    now = time.time()
    for name in names:
        storage = make_storage(args, home, name)
        try:
            auth = await storage.read_auth()
        except OAuthError as exc:
            print(f"{name}\n  unreadable:   {exc}")
            failed += 1
            continue
        if auth is None:
            print(f"{name}\n  not logged in (nothing in {where(storage)})")
            failed += 1
            continue
        print(_describe(name, auth, where(storage), now))
    return 1 if failed else 0


async def _logout(args: argparse.Namespace, home: Path) -> int:
    name = await _pick_name(home, args.name)
    storage = make_storage(args, home, name)
    auth = await storage.read_auth()
    if auth is None:
        raise NotAuthenticatedError(f"no login named {name!r} in {home}")
    provider = await _provider_for(home, name)
    note = "revoked at the provider"
    try:
        async with TokenClient(provider) as client:
            if not await client.revoke(auth):
                note = "the provider offers no revocation; tokens expire on their own"
    except OAuthError as exc:
        note = f"revocation FAILED ({exc}); the tokens may stay valid until they expire"
    await storage.clear_auth()
    await delete_provider(home, name)
    print(f"Logged out of {name}: local tokens deleted; {note}.")
    return 0


async def _token(args: argparse.Namespace, home: Path) -> int:
    name = await _pick_name(home, args.name)
    provider = await _provider_for(home, name)
    async with TokenManager(provider, make_storage(args, home, name)) as manager:
        print(await manager.get_access_token())
    return 0


def _setup_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ExtraFormatter())
    logger = logging.getLogger("vandamme_oauth")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    home = Path(getattr(args, "home", None) or default_home()).expanduser()
    command = {"login": login, "status": _status, "logout": _logout, "token": _token}
    try:
        return asyncio.run(command[args.command](args, home))
    except OAuthError as exc:
        print(f"vandamme-oauth: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vandamme-oauth: cancelled", file=sys.stderr)
        return 130
