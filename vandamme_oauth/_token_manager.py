"""TokenManager: a valid access token on the hot path, refreshed once for all callers.

Hot path: while the cached token is valid beyond the refresh margin, ``get_access_token()``
compares one clock reading with one float and returns; no lock, no I/O, no suspension.

Slow path (single flight, RFC 6749 section 6 and RFC 9700 section 4.14):

1. Under an in-process ``asyncio.Lock``, re-check, then re-read storage: another process or
   host may have refreshed already; adopt its token.
2. Still stale: take ``storage.lock()`` (other processes and hosts), re-read again, POST the
   refresh once (never retried once it may have reached the server), merge the answer into the
   freshly read login and write it before anyone sees the new access token.
3. Permanent refusal: re-read storage once more and adopt a newer login if one appeared;
   otherwise raise :class:`ReauthenticationRequired` and remember it for that refresh token so
   later callers fail without a request, until storage changes.
4. Transient failure: keep serving the current token while it is still valid, back off
   exponentially, and never return an expired token.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from typing import TYPE_CHECKING

from ._closing import AsyncClosing
from ._exceptions import (
    HttpError,
    NetworkError,
    NotAuthenticatedError,
    ReauthenticationRequired,
    StorageError,
    TokenError,
)
from ._token_client import TokenClient

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from ._http_client import RetryPolicy
    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["TokenManager"]

log = logging.getLogger(__name__)

_Transient = (TokenError, HttpError, NetworkError)


class TokenManager(AsyncClosing):
    """Hand out valid access tokens for one stored login.

    Args:
        provider: The provider the login belongs to.
        storage: Where the login lives (shared with other processes for file/Redis storage).
        refresh_margin: Refresh this many seconds before expiry (default 300). For tokens that
            live less than twice the margin, half their lifetime is used instead.
        clock: Wall clock in seconds since the epoch (injectable for tests).
        http_client: An AsyncClient for the token endpoint (not closed by us).
        retry: Retry policy for requests that are safe to repeat.
        max_backoff: Upper bound, seconds, between refresh attempts after transient failures.
    """

    def __init__(
        self,
        provider: ProviderConfig,
        storage: AuthStorage,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        self.provider = provider
        self.storage = storage
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._tokens = TokenClient(provider, http_client=http_client, retry=retry, clock=clock)
        self._lock = asyncio.Lock()
        self._max_backoff = max_backoff
        self._cached: AuthData | None = None
        self._token = ""
        self._fresh_until = -math.inf
        self._rejected: str | None = None
        self._dead: tuple[str | None, ReauthenticationRequired] | None = None
        self._failures = 0
        self._backoff_until = -math.inf
        self._last_error: Exception | None = None
        self._unsaved: tuple[AuthData, AuthData] | None = None

    def __repr__(self) -> str:
        return f"TokenManager(provider={self.provider.name!r}, storage={self.storage!r})"

    # -- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP client if the manager created it."""
        await self._tokens.aclose()

    # -- public API -------------------------------------------------------------------------

    async def get_access_token(self) -> str:
        """Return an access token valid for at least the refresh margin (or, while the
        provider is failing transiently, still valid now).

        Raises:
            NotAuthenticatedError: storage holds no login.
            ReauthenticationRequired: the refresh token was rejected for good.
            StorageError: storage cannot be read or written.
            TokenEndpointError, TokenError, NetworkError: the refresh failed transiently and
                the current token has expired.
        """
        if self._clock() < self._fresh_until:
            return self._token
        return (await self._slow_path()).access_token

    async def get_auth_data(self) -> AuthData:
        """Like :meth:`get_access_token`, returning the whole login (e.g. ``account_id`` for the
        ``ChatGPT-Account-ID`` header)."""
        if self._clock() < self._fresh_until and self._cached is not None:
            return self._cached
        return await self._slow_path()

    def report_unauthorized(self, access_token: str) -> None:
        """Tell the manager an API answered 401 to ``access_token``.

        If that token is still the current one, the next call refreshes (once, however many
        callers report it); reports about older tokens are ignored.
        """
        if access_token and access_token == self._token:
            log.info("access token reported unauthorized; the next call refreshes")
            self._rejected = access_token
            self._fresh_until = -math.inf

    async def refresh(self) -> AuthData:
        """Force a refresh of the current token now and return the new login."""
        if self._cached is None:
            await self._slow_path()
        self.report_unauthorized(self._token)
        return await self._slow_path()

    # -- internals --------------------------------------------------------------------------

    def _expiry(self, auth: AuthData) -> float:
        if auth.expires_at is not None:
            return auth.expires_at
        return auth.last_refresh + self.provider.fallback_lifetime

    def _fresh_deadline(self, auth: AuthData) -> float:
        if auth.access_token == self._rejected:
            return -math.inf
        expiry = self._expiry(auth)
        lifetime = expiry - auth.last_refresh
        margin = min(self.refresh_margin, lifetime / 2) if lifetime > 0 else self.refresh_margin
        return expiry - margin

    def _adopt(self, auth: AuthData) -> None:
        if self._cached is not None and auth.refresh_token != self._cached.refresh_token:
            self._dead = None  # storage changed: a new login heals us
            self._failures = 0
            self._backoff_until = -math.inf
        self._cached = auth
        self._token = auth.access_token
        self._fresh_until = self._fresh_deadline(auth)

    def _usable(self, auth: AuthData, now: float) -> bool:
        return auth.access_token != self._rejected and now < self._expiry(auth)

    async def _read(self) -> AuthData:
        stored = await self.storage.read_auth()
        if stored is None:
            self._cached, self._token, self._fresh_until = None, "", -math.inf
            raise NotAuthenticatedError(
                f"no {self.provider.name} login is stored; run 'vandamme-oauth login' first"
            )
        return stored

    def _serve_stale(self, auth: AuthData, now: float, until: float, why: str) -> AuthData:
        """Keep serving a still-valid token through an outage, without a lock, until ``until``
        (never past its expiry)."""
        log.warning("%s; serving the still-valid token", why)
        self._cached, self._token = auth, auth.access_token
        self._fresh_until = min(until, self._expiry(auth))
        return auth

    async def _slow_path(self) -> AuthData:
        if self._lock.locked():
            log.debug("waiting for a refresh in progress")
        async with self._lock:
            now = self._clock()
            if now < self._fresh_until and self._cached is not None:
                return self._cached  # another task refreshed while we waited
            try:
                stored = await self._read()
            except StorageError as exc:
                cached = self._cached
                if cached is not None and self._usable(cached, now):
                    return self._serve_stale(cached, now, now + 1.0, f"storage failed ({exc})")
                raise
            if self._unsaved is not None:
                return await self._refresh(stored)  # first try to persist what we hold
            if stored != self._cached:
                self._adopt(stored)
                if now < self._fresh_until:
                    return stored
            if self._dead is not None and self._dead[0] == stored.refresh_token:
                raise copy.copy(self._dead[1])  # a fresh traceback per caller
            if now < self._backoff_until:
                if self._usable(stored, now):
                    return self._serve_stale(stored, now, self._backoff_until, "backing off")
                if self._last_error is not None:
                    raise copy.copy(self._last_error)
            return await self._refresh(stored)

    async def _refresh(self, seen: AuthData) -> AuthData:
        now = self._clock()
        try:
            async with self.storage.lock():
                return await self._refresh_locked(seen)
        except StorageError as exc:
            cached = self._cached
            if cached is not None and self._usable(cached, now):
                return self._serve_stale(cached, now, now + 1.0, f"storage failed ({exc})")
            raise

    async def _persist_unsaved(
        self, latest: AuthData, unsaved: tuple[AuthData, AuthData]
    ) -> AuthData:
        base, new = unsaved
        if latest == base:
            await self.storage.write_auth(new)
            log.info("stored the refreshed login that an earlier write failed to save")
            latest = new
        else:
            log.warning("storage changed since our unsaved refresh; adopting the stored login")
        self._unsaved = None
        return latest

    async def _refresh_locked(self, seen: AuthData) -> AuthData:
        latest = await self._read()
        if self._unsaved is not None:
            latest = await self._persist_unsaved(latest, self._unsaved)
        now = self._clock()
        if latest != seen or latest != self._cached:
            self._adopt(latest)
            if now < self._fresh_until:
                log.info("adopted a token stored by another process")
                return latest
        try:
            new = await self._tokens.refresh(latest)
        except ReauthenticationRequired as exc:
            newer = await self.storage.read_auth()
            if newer is not None and newer.refresh_token != latest.refresh_token:
                log.info("refresh token rejected, but a newer login is stored; adopting it")
                self._adopt(newer)
                return newer
            self._dead = (latest.refresh_token, exc)
            raise
        except _Transient as exc:
            self._failures += 1
            delay = min(self._max_backoff, 2.0 ** (self._failures - 1))
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, float):
                delay = max(delay, min(retry_after, self._max_backoff))
            self._backoff_until = now + delay
            self._last_error = exc
            if self._usable(latest, now):
                return self._serve_stale(
                    latest, now, self._backoff_until, f"refresh failed ({exc})"
                )
            raise
        self._failures = 0
        self._backoff_until = -math.inf
        self._rejected = None
        try:
            await self.storage.write_auth(new)
        except StorageError as exc:
            # The server has rotated the refresh token: the new one exists only here now.
            # Serve it, and retry the write on the next call after a short pause.
            log.error("the refreshed login could not be stored (%s); holding it in memory", exc)
            self._unsaved = (latest, new)
            self._adopt(new)
            self._fresh_until = min(self._fresh_until, now + 1.0)
            return new
        self._adopt(new)
        return new
