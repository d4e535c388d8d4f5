"""AuthData, the stored login, and the AuthStorage protocol every backend implements.

On-disk / on-wire format (version 1), one JSON object per login::

    {
      "version": 1,
      "tokens": {"access_token": "...", "refresh_token": "...", "id_token": "..."},
      "account_id": "...",            # or null
      "email": "...",                 # or null
      "token_type": "Bearer",
      "scope": "openid ...",          # or null
      "expires_at": "2026-11-27T10:00:00Z",   # RFC 3339 UTC, or null when unknown
      "last_refresh": "2026-11-27T09:00:00Z"  # RFC 3339 UTC
    }

Unknown keys are ignored on read, so newer writers stay readable by older readers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._exceptions import StorageError, ValidationError
from .._times import check_instant

if TYPE_CHECKING:
    import contextlib

__all__ = ["FORMAT_VERSION", "AuthData", "AuthStorage", "parse_stored", "store_login"]

FORMAT_VERSION = 1


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
        return {
            "version": FORMAT_VERSION,
            "tokens": {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "id_token": self.id_token,
            },
            "account_id": self.account_id,
            "email": self.email,
            "token_type": self.token_type,
            "scope": self.scope,
            "expires_at": _to_rfc3339(self.expires_at),
            "last_refresh": _to_rfc3339(self.last_refresh),
        }

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


@runtime_checkable
class AuthStorage(Protocol):
    """Where a login lives. Every method is async; backends keep blocking I/O off the loop.

    ``lock()`` excludes other refreshers of the same login: other coroutines, and for the
    file and Redis backends other processes and hosts. Hold it across re-read, refresh and
    write so a rotating refresh token is spent exactly once.

    Optional, found by name: ``changes(*, interval)``, an async generator yielding whenever
    the stored login may have changed (the [`TokenManager`][vandamme_oauth.TokenManager]'s watcher
    polls ``read_auth()`` otherwise); ``prepare()``, a coroutine that gets the backend ready
    for a first refresh; and ``remember_provider(profile)``, a coroutine keeping the
    provider profile (a JSON-ready dict, no secrets) of a login made by a login flow.
    """

    async def read_auth(self) -> AuthData | None:
        """Return the stored login, or None when there is none.

        Raises:
            StorageError: the stored data exists but cannot be read or parsed.
        """
        ...

    async def write_auth(self, data: AuthData) -> None:
        """Store ``data`` atomically: a reader sees the old login or the new one, never half."""
        ...

    async def clear_auth(self) -> None:
        """Delete the stored login (no error when there is none)."""
        ...

    async def is_authenticated(self) -> bool:
        """True when a login is stored."""
        ...

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        """An async context manager excluding other refreshers of this login."""
        ...


async def store_login(storage: AuthStorage, auth: AuthData, profile: Mapping[str, Any]) -> None:
    """Store a new login: first its provider profile, where the backend keeps one (the
    optional ``remember_provider(profile)``), then the tokens. Tokens are never stored
    without the profile that says where they can be refreshed and revoked."""
    remember = getattr(storage, "remember_provider", None)
    if remember is not None:
        await remember(profile)
    await storage.write_auth(auth)
