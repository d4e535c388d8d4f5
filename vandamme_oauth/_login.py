"""The login itself, on the ground floor: ``AuthData`` and the rules for login names.

This module imports nothing of the package but its exceptions and time checks, so the
protocol core, the providers and the storage backends can all build on it.

On-disk / on-wire format (version 1), one JSON object per login::

    {
      "version": 1,
      "tokens": {"access_token": "...", "refresh_token": "...", "id_token": "...",
                 "api_key": "..."},          # api_key: only when one was obtained
      "account_id": "...",            # or null
      "email": "...",                 # or null
      "token_type": "Bearer",
      "scope": "openid ...",          # or null
      "expires_at": "2026-11-27T10:00:00Z",   # RFC 3339 UTC, or null when unknown
      "last_refresh": "2026-11-27T09:00:00Z", # RFC 3339 UTC
      "claims": {"plan_type": "plus", "user_id": "...",       # only the ones known
                 "organization_id": "...", "project_id": "..."}
    }

Unknown keys are ignored on read, so newer writers stay readable by older readers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import StorageError, ValidationError
from ._times import check_instant

__all__ = ["CLAIMS", "FORMAT_VERSION", "AuthData", "check_login_name", "login_name", "parse_stored"]

FORMAT_VERSION = 1
#: The typed claims a login may carry (filled from the ID token by the provider's
#: ``claim_paths``).
CLAIMS = ("plan_type", "user_id", "organization_id", "project_id")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_login_name(name: str) -> str:
    """Return ``name`` if it is usable as a login/file name.

    Raises:
        ValidationError: it has characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not _NAME_RE.match(name) or name.endswith((".lock", ".tmp")):
        raise ValidationError(
            f"login name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def login_name(issuer: str) -> str:
    """A login name derived from an issuer: ``accounts.example.com``, ``127.0.0.1-8080``."""
    parts = urlsplit(issuer)
    raw = (parts.hostname or "login") + (f"-{parts.port}" if parts.port else "") + parts.path
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")
    return slug[:64] or "login"


def _to_rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    when = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return when.isoformat(timespec="seconds" if ts == int(ts) else "milliseconds").replace(
        "+00:00", "Z"
    )


def _from_rfc3339(value: object, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = check_instant(value)
        if number is None:
            raise ValidationError(f"{key!r} is not a time between 1970 and 9999")
        return number
    if not isinstance(value, str):
        raise ValidationError(f"{key!r} must be an RFC 3339 time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{key!r} is not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key!r} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class AuthData:
    """One login's tokens. Immutable; secrets never appear in ``repr``.

    Attributes:
        access_token: The bearer token to send to APIs.
        refresh_token: The (possibly rotating) refresh token, if the provider issued one.
        id_token: The OpenID Connect ID token, if any.
        account_id: The account the tokens belong to (ChatGPT: ``chatgpt_account_id``;
            otherwise the ID token's ``sub``).
        email: The account's email, when the ID token carries one.
        expires_at: When the access token expires, seconds since the epoch, or None if unknown.
        last_refresh: When these tokens were obtained, seconds since the epoch.
        token_type: The token type (``Bearer``).
        scope: The granted scope string, when the server reported it.
        api_key: An API key obtained with the login (ChatGPT's optional token exchange:
            an OpenAI API key); a secret, never in ``repr``.
        plan_type: The account's plan (ChatGPT: ``free``, ``plus``, ``pro``, ``team``...).
        user_id: The user behind the account (ChatGPT: ``chatgpt_user_id``).
        organization_id: The organization the login acts for, when the token names one.
        project_id: The project the login acts for, when the token names one.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    account_id: str | None = None
    email: str | None = None
    expires_at: float | None = None
    last_refresh: float = 0.0
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    scope: str | None = None
    api_key: str | None = field(default=None, repr=False)
    plan_type: str | None = None
    user_id: str | None = None
    organization_id: str | None = None
    project_id: str | None = None

    def __post_init__(self) -> None:
        # Every time is checked here, where a login is made, so that nothing further down
        # (formatting for storage, the hot path's comparison) meets a NaN or an overflow.
        # Times are kept to the millisecond so that the JSON form round-trips exactly and a
        # login read back from storage compares equal to the one written.
        for name in ("expires_at", "last_refresh"):
            value = getattr(self, name)
            if value is None and name == "expires_at":
                continue
            number = check_instant(value)
            if number is None:
                raise ValidationError(
                    f"{name} must be seconds since the epoch between 1970 and 9999, "
                    f"not {value!r:.40}"
                )
            object.__setattr__(self, name, round(number, 3))

    def expires_in(self, now: float) -> float | None:
        """Seconds until the access token expires (negative once expired), None if unknown."""
        return None if self.expires_at is None else self.expires_at - now

    def replace(self, **changes: Any) -> AuthData:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON form documented in this module's docstring."""
        tokens: dict[str, str | None] = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
        }
        if self.api_key is not None:
            tokens["api_key"] = self.api_key
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "tokens": tokens,
            "account_id": self.account_id,
            "email": self.email,
            "token_type": self.token_type,
            "scope": self.scope,
            "expires_at": _to_rfc3339(self.expires_at),
            "last_refresh": _to_rfc3339(self.last_refresh),
        }
        claims = {name: getattr(self, name) for name in CLAIMS if getattr(self, name)}
        if claims:
            data["claims"] = claims
        return data

    @classmethod
    def from_dict(cls, data: object) -> AuthData:
        """Parse the JSON form written by `to_dict()`.

        Raises:
            ValidationError: the data is not a version-1 login with an access token.
        """
        if not isinstance(data, Mapping):
            raise ValidationError("auth data must be a JSON object")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise ValidationError(
                f"unsupported auth data version {version!r} (this library reads {FORMAT_VERSION})"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, Mapping):
            raise ValidationError("auth data has no 'tokens' object")
        access_token = tokens.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValidationError("auth data has no access token")
        last_refresh = _from_rfc3339(data.get("last_refresh"), "last_refresh")
        claims = data.get("claims") or {}
        if not isinstance(claims, Mapping):
            raise ValidationError("auth data 'claims' must be an object")
        return cls(
            access_token=access_token,
            refresh_token=_opt_str(tokens, "refresh_token"),
            id_token=_opt_str(tokens, "id_token"),
            account_id=_opt_str(data, "account_id"),
            email=_opt_str(data, "email"),
            expires_at=_from_rfc3339(data.get("expires_at"), "expires_at"),
            last_refresh=last_refresh if last_refresh is not None else 0.0,
            token_type=_opt_str(data, "token_type") or "Bearer",
            scope=_opt_str(data, "scope"),
            api_key=_opt_str(tokens, "api_key"),
            **{name: _opt_str(claims, name) for name in CLAIMS},
        )


def parse_stored(
    raw: bytes | str, *, where: str, advice: str = "log in again to replace it"
) -> AuthData:
    """Parse a stored login (the JSON of `AuthData.to_dict()`).

    Raises:
        StorageError: naming ``where`` and what is wrong; never quoting the content.
    """
    try:
        return AuthData.from_dict(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors whose text quotes no content;
        # ValidationError messages never hold token values.
        reason = exc.message if isinstance(exc, ValidationError) else "not valid JSON"
        raise StorageError(f"{where} is unreadable ({reason}); {advice}") from None
