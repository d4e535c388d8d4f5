"""``vandamme-oauth status``: the truth about each stored login, for people and for scripts.

Each login gets one state word:

- ``valid``: the access token is good beyond the refresh margin (5 min);
- ``expiring``: it expires within the margin (the next use refreshes it, if it can);
- ``expired``: it has expired; usable only when a refresh token can renew it;
- ``refresh failed``: ``--check`` tried to renew it and the provider refused (log in again);
- ``check failed``: ``--check`` could not reach a verdict (network, provider down);
- ``not logged in`` / ``unreadable`` / ``no provider``: nothing usable is stored.

The exit code is 0 only when every login shown is usable (as ``gh auth status``). ``--json``
prints the same facts as one stable document (``version`` 1) with no secret in it.
``--check`` proves each login live through a [`TokenManager`][vandamme_oauth.TokenManager]: it
refreshes a login that needs it, stores the answer, and reports the outcome.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any

from ._cli_common import known_logins, login_command, make_storage, where
from ._exceptions import OAuthError, ReauthenticationRequired, StorageError
from ._manager_policy import Windows
from ._profiles import load_provider
from ._token_manager import TokenManager
from .providers import chatgpt

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from ._provider import ProviderConfig
    from .storage._base import AuthData

__all__ = ["add_status_arguments", "human_duration", "status"]

_MARGIN = 300.0  # TokenManager's default refresh_margin
_MANDATORY = 20.0  # and its mandatory_margin
JSON_VERSION = 1


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``status`` subcommand's options."""
    parser.add_argument("name", nargs="?", help="show only this login")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (no secrets) instead"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="prove each login live: refresh it when needed and report the outcome",
    )


def human_duration(seconds: float) -> str:
    """``in 42 s``, ``in 5 min``, ``in 2 h 5 min``, ``in 3 d 4 h``; ``... ago`` when past."""
    total = int(abs(seconds))
    if total < 60:
        text = f"{total} s"
    elif total < 3600:
        text = f"{total // 60} min"
    elif total < 86400:
        text = f"{total // 3600} h {total % 3600 // 60} min"
    else:
        text = f"{total // 86400} d {total % 86400 // 3600} h"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class _Report:
    """What ``status`` says about one login (no secrets)."""

    name: str
    state: str
    usable: bool
    storage: str
    account_id: str | None = None
    email: str | None = None
    plan: str | None = None
    issuer: str | None = None
    resource: str | None = None
    scopes: list[str] | None = None
    expires_at: float | None = None
    last_refresh: float | None = None
    refreshable: bool = False
    detail: str | None = None
    fix: str | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["expires_at"] = _rfc3339(self.expires_at)
        data["last_refresh"] = _rfc3339(self.last_refresh)
        data["expires_in"] = None if self.expires_at is None else int(self.expires_at - now)
        return data

    def to_text(self, now: float) -> str:
        lines = [f"{self.name}: {self.state}" + (f" ({self.detail})" if self.detail else "")]
        if self.account_id or self.email:
            account = self.email or self.account_id
            if self.email and self.account_id:
                account = f"{self.email} ({self.account_id})"
            lines.append(f"  account:     {account}")
        if self.plan:
            lines.append(f"  plan:        {self.plan}")
        if self.issuer:
            lines.append(f"  issuer:      {self.issuer}")
        if self.resource:
            lines.append(f"  resource:    {self.resource}")
        if self.scopes:
            lines.append(f"  scopes:      {' '.join(self.scopes)}")
        if self.expires_at is not None:
            lines.append(
                f"  expires:     {human_duration(self.expires_at - now)} "
                f"({_rfc3339(self.expires_at)})"
            )
        if self.state not in ("not logged in", "unreadable"):
            lines.append(f"  refreshable: {'yes' if self.refreshable else 'no'}")
        lines.append(f"  storage:     {self.storage}")
        if self.fix:
            lines.append(f"  to fix:      {self.fix}")
        return "\n".join(lines)


def _judge(auth: AuthData, provider: ProviderConfig | None, now: float) -> tuple[str, bool, str]:
    """(state, usable, detail) of a stored login, from its times alone."""
    if provider is None:
        return "no provider", False, "its provider profile is missing: log in again"
    expires_at = auth.expires_at
    if expires_at is None:
        expires_at = auth.last_refresh + provider.fallback_lifetime
    windows = Windows.of(  # on the wall clock: status reads stored times
        expires_at=expires_at,
        last_refresh=auth.last_refresh,
        wall_now=now,
        steady_now=now,
        margin=_MARGIN,
        mandatory_margin=_MANDATORY,
    )
    refreshable = auth.refresh_token is not None
    if now < windows.advisory:
        return "valid", True, ""
    if now < windows.expiry:
        if refreshable:
            return "expiring", True, "renewed on next use"
        return "expiring", True, "cannot be renewed: log in again soon"
    if refreshable:
        return "expired", True, "renewed on next use"
    return "expired", False, "no refresh token: log in again"


async def _check(
    report: _Report, provider: ProviderConfig, args: argparse.Namespace, home: Path
) -> None:
    """Prove the login live through a TokenManager (which refreshes it when needed)."""
    storage = make_storage(args, home, report.name)
    try:
        async with TokenManager(provider, storage, watch_interval=None) as manager:
            await manager.get_access_token()
        auth = await storage.read_auth()
    except ReauthenticationRequired as exc:
        report.state, report.usable, report.refreshable = "refresh failed", False, False
        report.detail = re.sub(r"; log in again\b.*$", "", exc.message)  # "to fix" says how
        return
    except OAuthError as exc:
        report.state, report.usable, report.detail = "check failed", False, exc.message
        return
    if auth is None:  # logged out meanwhile
        report.state, report.usable, report.detail = "not logged in", False, None
        return
    refreshed = report.last_refresh is not None and auth.last_refresh != report.last_refresh
    report.expires_at, report.last_refresh = auth.expires_at, auth.last_refresh
    report.refreshable = auth.refresh_token is not None
    report.state, report.usable = "valid", True
    report.detail = "checked: refreshed now" if refreshed else "checked"


async def _report(args: argparse.Namespace, home: Path, name: str, now: float) -> _Report:
    storage = make_storage(args, home, name)
    report = _Report(name=name, state="not logged in", usable=False, storage=where(storage))
    try:
        provider = await load_provider(home, name)
    except StorageError as exc:
        provider = None
        report.detail = exc.message
    try:
        auth = await storage.read_auth()
    except OAuthError as exc:
        report.state, report.detail = "unreadable", exc.message
        report.fix = login_command(args, name)
        return report
    report.storage = where(storage)  # a keyring that fell back names the file now
    if provider is not None:
        report.issuer, report.scopes = provider.issuer, list(provider.scopes)
        report.resource = provider.resource
    if auth is None:
        report.fix = login_command(args, name) if provider is not None else None
        return report
    report.account_id, report.email = auth.account_id, auth.email
    if auth.scope:
        report.scopes = auth.scope.split()
    if provider is not None and chatgpt.is_chatgpt(provider):
        report.plan = chatgpt.plan_of(auth)
    report.expires_at, report.last_refresh = auth.expires_at, auth.last_refresh
    report.refreshable = auth.refresh_token is not None
    report.state, report.usable, detail = _judge(auth, provider, now)
    report.detail = detail or None
    if args.check and provider is not None:
        await _check(report, provider, args, home)
    if not report.usable:
        report.fix = login_command(args, name)
    return report


async def status(args: argparse.Namespace, home: Path) -> int:
    """Run ``vandamme-oauth status`` and return the exit code (0: every login usable)."""
    names = [args.name] if args.name else await known_logins(home)
    now = time.time()
    reports = [await _report(args, home, name, now) for name in names]
    if args.json:
        document = {
            "version": JSON_VERSION,
            "home": str(home),
            "logins": [report.to_json(now) for report in reports],
        }
        print(json.dumps(document, indent=2))
    elif not reports:
        print(f"No logins stored in {home}. Run: vandamme-oauth login chatgpt")
    else:
        print("\n\n".join(report.to_text(now) for report in reports))
    return 0 if reports and all(report.usable for report in reports) else 1
