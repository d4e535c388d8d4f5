"""The ``vandamme-oauth`` command: login, status, logout, token, api-key.

``main(argv)`` parses arguments, runs one coroutine with ``asyncio.run`` and maps every
[`OAuthError`][vandamme_oauth.OAuthError] to a one-line reason on stderr and exit code 1 (2 for
usage errors, 130 for Ctrl-C). Nothing here prints a secret except ``token`` and ``api-key``, whose
job it is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._cli_common import login_command, make_storage, pick_name, provider_for, say
from ._cli_login import add_login_arguments, login
from ._cli_status import add_status_arguments, status
from ._exceptions import NotAuthenticatedError, OAuthError, ReauthenticationRequired
from ._profiles import delete_provider
from ._secrets import SERVICE
from ._token_client import TokenClient
from ._token_manager import TokenManager
from .storage._base import log_out
from .storage._filesystem import default_home

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._login import AuthData

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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vandamme-oauth")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "unknown"


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
    parser.add_argument("--version", action="version", version=f"vandamme-oauth {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = sub.add_parser("login", parents=[common], help="sign in (browser, paste or device)")
    add_login_arguments(login)
    status = sub.add_parser("status", parents=[common], help="show stored logins (no secrets)")
    add_status_arguments(status)
    for name, text in (
        ("logout", "revoke (best effort) and delete a login"),
        ("token", "print a valid access token, refreshing it if needed"),
        ("api-key", "print the API key stored with a login (login chatgpt --api-key)"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("name", nargs="?", help="the login's name")
    return parser


async def _logout(args: argparse.Namespace, home: Path) -> int:
    name = await pick_name(home, args.name)
    storage = make_storage(args, home, name)
    auth = await storage.read_auth()
    if auth is None:
        raise NotAuthenticatedError(f"no login named {name!r} in {home}")
    provider = await provider_for(args, home, name)
    note = "revoked at the provider"

    async def revoke(stored: AuthData) -> None:
        # Under the storage lock: what a refresh in flight stored is what is revoked.
        nonlocal note
        try:
            async with TokenClient(provider) as client:
                if not await client.revoke(stored):
                    note = "the provider offers no revocation; tokens expire on their own"
        except OAuthError as exc:
            note = f"revocation FAILED ({exc}); the tokens may stay valid until they expire"

    await log_out(storage, revoke)
    kept = await delete_provider(home, name)
    if kept is not None:
        say(
            f"The client secret of {name} stays in the OS keyring ({kept}); delete it "
            f"there: keyring del {SERVICE} {name}:client"
        )
    print(f"Logged out of {name}: local tokens deleted; {note}.")
    return 0


async def _token(args: argparse.Namespace, home: Path) -> int:
    name = await pick_name(home, args.name)
    provider = await provider_for(args, home, name)
    args.relogin = login_command(args, name)  # the saved profile makes `login NAME` work
    async with TokenManager(provider, make_storage(args, home, name)) as manager:
        print(await manager.get_access_token())
    return 0


async def _api_key(args: argparse.Namespace, home: Path) -> int:
    name = await pick_name(home, args.name)
    auth = await make_storage(args, home, name).read_auth()
    if auth is None:
        args.relogin = login_command(args, name)
        raise NotAuthenticatedError(f"no login named {name!r} is stored in {home}")
    if not auth.api_key:
        raise NotAuthenticatedError(
            f"the login {name!r} has no API key; get one with: "
            f"vandamme-oauth login {name} --api-key"
        )
    print(auth.api_key)
    return 0


def _one_line(exc: OAuthError, relogin: str | None) -> str:
    """The error as the user sees it: one line, ending with the command that fixes it when
    the fix is a new login."""
    text = " ".join(str(exc).split())
    if relogin and isinstance(exc, NotAuthenticatedError | ReauthenticationRequired):
        # The library's generic advice gives way to the exact command for this login.
        text = re.sub(r"; log in (again|first)\b.*$", "", text)
        text += f"; log in again with: {relogin}"
    return f"vandamme-oauth: {text}"


def _setup_logging(verbosity: int) -> None:
    """The library's records reach the terminal only with ``-v`` (INFO) or ``-vv`` (DEBUG).
    Without, the library's NullHandler keeps them away from Python's last-resort handler:
    the CLI itself reports every problem, once. stamina's WARNING for each retry it
    schedules is not shown either (the library gives its logger a NullHandler too; ``-vv``
    shows the library's own record of a retry)."""
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ExtraFormatter())
    logger = logging.getLogger("vandamme_oauth")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code:
    0 done, 1 failed (one line on stderr), 2 usage error, 130 interrupted."""
    args = _parser().parse_args(argv)
    if (check_usage := getattr(args, "check_usage", None)) is not None:
        check_usage(args)  # contradictory options: a usage error (exit 2), before any I/O
    _setup_logging(getattr(args, "verbose", 0))
    home = Path(getattr(args, "home", None) or default_home()).expanduser()
    command = {
        "login": login,
        "status": status,
        "logout": _logout,
        "token": _token,
        "api-key": _api_key,
    }
    try:
        return asyncio.run(command[args.command](args, home))
    except OAuthError as exc:
        print(_one_line(exc, getattr(args, "relogin", None)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vandamme-oauth: cancelled", file=sys.stderr)
        return 130
