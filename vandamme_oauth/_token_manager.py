"""TokenManager: a valid access token on the hot path; refreshes are the manager's own work.

Each login the manager has adopted has three instants (see `_Windows`)::

    last_refresh ......... advisory ......... mandatory ...... expiry
         │      fresh         │  refreshing ahead  │  waiting     │  expired: waiting
         │  (hot path)        │  (served at once)  │  (for the    │  (never served)
                                                       refresh)

``advisory`` is ``refresh_margin`` before expiry (half the lifetime for tokens that live less
than twice the margin); ``mandatory`` is ``mandatory_margin`` before expiry (at most a tenth
of the lifetime), the allowance for clock skew between us and the provider.

How a call moves between the states ([`ManagerState`][vandamme_oauth.ManagerState]):

- **FRESH**: before ``advisory``, ``get_access_token()`` reads the clock once, compares it
  with one float and returns the cached token: no lock, no I/O, no suspension.
- **REFRESHING_AHEAD**: from ``advisory`` to ``mandatory`` the first call starts ONE refresh
  in a task the manager owns and every call, that one included, gets the current token at
  once. A token endpoint that hangs never delays them.
- **WAITING**: from ``mandatory`` on (and with no login loaded yet, or after an API reported
  the token unauthorized), callers await the shared result of that one task: one future, no
  lock chain. A caller that is cancelled or times out leaves; the refresh goes on.
- **BACKING_OFF**: a transient failure (5xx, 429, network, a broken answer) keeps serving the
  token while it has not expired, and no new refresh starts until the backoff, measured from
  the END of the failed attempt (``Retry-After`` honoured up to ``max_backoff``), is over.
  An expired token is never served: callers then get the failure.
- **DEAD**: the provider rejected the refresh token for good. The still-valid token is served
  until it expires, then [`ReauthenticationRequired`][vandamme_oauth.ReauthenticationRequired] is
  raised without a request, until storage holds another refresh token (a new login).

The refresh task (single flight, RFC 6749 section 6, RFC 9700 section 4.14): read storage
and adopt what another process stored; take ``storage.lock()`` (other processes and hosts);
read again; POST once (never retried once it may have reached the server); merge the answer
into the freshly read login and write it before the new token is served. Once the POST may
have reached the server its answer is kept whatever happens next: a write that fails (any
exception) leaves the new login in memory, served, and written again on a later call. A
refresh answer that is unusable but carries a rotated refresh token is stored too.

A watcher task (started by the first call or ``async with``) notices logins written by
someone else (a re-login, another account, a logout) within about a second, through the
backend's ``changes()`` where it has one, else by polling ``read_auth()``. ``aclose()`` stops
the watcher and waits, up to ``close_timeout``, for a refresh in flight to be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from ._backoff import Backoff
from ._closing import AsyncClosing
from ._exceptions import (
    HttpError,
    NetworkError,
    NotAuthenticatedError,
    OAuthError,
    ReauthenticationRequired,
    StorageError,
    TokenError,
)
from ._token_client import TokenClient
from .storage._base import Preparable, Watchable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    import httpx

    from ._http_client import RetryPolicy
    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["ManagerState", "TokenManager"]

log = logging.getLogger(__name__)

_TRANSIENT = (TokenError, HttpError, NetworkError)
_UNSAVED_RETRY = 1.0  # seconds before a call tries again to store a login held in memory


def _fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` to raise in one more caller: re-raising one object in many tasks
    would pile every caller's traceback onto it."""
    new = type(exc).__new__(type(exc))
    new.args = exc.args
    if hasattr(exc, "__dict__"):
        new.__dict__.update(exc.__dict__)
    return new


class ManagerState(enum.Enum):
    """Where a [`TokenManager`][vandamme_oauth.TokenManager] stands; see the module docstring for
    the moves."""

    EMPTY = "empty"  #: no login loaded yet (or storage holds none)
    FRESH = "fresh"  #: the cached token is served on the hot path
    REFRESHING_AHEAD = "refreshing ahead"  #: a refresh runs or is due; callers get the token
    WAITING = "waiting"  #: callers wait for a refresh (mandatory window, expired, or rejected)
    BACKING_OFF = "backing off"  #: the last refresh failed transiently
    DEAD = "dead"  #: the refresh token was rejected; a new login is needed


@dataclass(frozen=True, slots=True)
class _Windows:
    """The instants of one adopted login (seconds since the epoch)."""

    advisory: float
    mandatory: float
    expiry: float

    @classmethod
    def of(
        cls, auth: AuthData, *, fallback_lifetime: float, margin: float, mandatory_margin: float
    ) -> _Windows:
        expiry = (
            auth.expires_at
            if auth.expires_at is not None
            else auth.last_refresh + fallback_lifetime
        )
        lifetime = expiry - auth.last_refresh
        if lifetime > 0:
            margin = min(margin, lifetime / 2)
            mandatory_margin = min(mandatory_margin, lifetime / 10)
        mandatory = expiry - min(mandatory_margin, margin)
        return cls(advisory=expiry - margin, mandatory=mandatory, expiry=expiry)


_NONE = _Windows(-math.inf, -math.inf, -math.inf)


class TokenManager(AsyncClosing):
    """Hand out valid access tokens for one stored login.

    Args:
        provider: The provider the login belongs to.
        storage: Where the login lives (shared with other processes for file/Redis storage).
        refresh_margin: Start refreshing (in the background) this many seconds before expiry
            (default 300). For tokens that live less than twice the margin, half their
            lifetime is used instead.
        mandatory_margin: From this many seconds before expiry, callers wait for the refresh
            instead of getting the old token (default 20: clock skew; at most a tenth of the
            token's lifetime).
        clock: Wall clock in seconds since the epoch (injectable for tests).
        http_client: An AsyncClient for the token endpoint (not closed by us).
        retry: Retry policy for requests that are safe to repeat.
        max_backoff: Upper bound, seconds, between refresh attempts after transient failures
            (``Retry-After`` is honoured up to this bound).
        watch_interval: How often, in seconds, the watcher looks for logins written by others
            when the backend cannot notify (None: no watcher).
        close_timeout: How long `aclose()` waits for a refresh in flight to be stored.
    """

    def __init__(
        self,
        provider: ProviderConfig,
        storage: AuthStorage,
        *,
        refresh_margin: float = 300.0,
        mandatory_margin: float = 20.0,
        clock: Callable[[], float] = time.time,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        max_backoff: float = 60.0,
        watch_interval: float | None = 0.5,
        close_timeout: float = 10.0,
    ) -> None:
        self.provider = provider
        self.storage = storage
        self.refresh_margin = refresh_margin
        self.mandatory_margin = mandatory_margin
        self.max_backoff = max_backoff
        self.watch_interval = watch_interval
        self.close_timeout = close_timeout
        self._clock = clock
        self._tokens = TokenClient(provider, http_client=http_client, retry=retry, clock=clock)
        # The login being served; the hot path reads only _token and _fresh_until.
        self._auth: AuthData | None = None
        self._token = ""
        self._fresh_until = -math.inf
        self._windows = _NONE
        self._generation = 0  # bumped whenever _auth changes (the watcher checks it)
        self._rejected: str | None = None  # an access token an API answered 401 to
        # Failures.
        self._dead: tuple[str | None, ReauthenticationRequired] | None = None
        self._failures = 0
        self._backoff_until = -math.inf
        self._last_error: OAuthError | None = None
        # A refreshed login the storage refused: (the login it replaces, the new login).
        self._unsaved: tuple[AuthData, AuthData] | None = None
        # Owned tasks.
        self._task: asyncio.Task[AuthData] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._again = False  # start another refresh when this one ends
        self._closed = False

    def __repr__(self) -> str:
        return f"TokenManager(provider={self.provider.name!r}, storage={self.storage!r})"

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Start the watcher and prepare what a first refresh needs (the HTTP client and
        SSL context, the storage's lock machinery), so that it costs only its round trip."""
        await self._tokens.open()
        if isinstance(self.storage, Preparable):
            await self.storage.prepare()
        self._start_watcher()
        return self

    async def aclose(self) -> None:
        """Stop the watcher, wait (up to ``close_timeout``) for a refresh in flight to be
        stored, make a last attempt to store a login held in memory, and close the HTTP
        client if the manager created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait({watcher})
        task = self._task
        if task is not None:
            _, pending = await asyncio.wait({task}, timeout=self.close_timeout)
            if pending:
                log.warning(
                    "a refresh was still running after %g s; abandoning it", self.close_timeout
                )
                task.cancel()
                await asyncio.wait({task})
        if self._unsaved is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.close_timeout):
                    await self.storage.write_auth(self._unsaved[1])
                    self._unsaved = None
            if self._unsaved is not None:
                log.error("closing with a refreshed login that storage would not take")
        await self._tokens.aclose()

    # -- public API -------------------------------------------------------------------------

    @property
    def state(self) -> ManagerState:
        """Where the manager stands now (see [`ManagerState`][vandamme_oauth.ManagerState])."""
        auth, now = self._auth, self._clock()
        if auth is None:
            return ManagerState.EMPTY
        if self._dead is not None and self._dead[0] == auth.refresh_token:
            return ManagerState.DEAD
        if self._task is None and now < self._backoff_until:
            return ManagerState.BACKING_OFF
        if self._task is not None or now >= self._windows.advisory:
            # A refresh runs, or the next call starts one (the token is in its margin, or an
            # API rejected it): do callers get the token meanwhile, or wait?
            return (
                ManagerState.REFRESHING_AHEAD if self._serves_at_once(now) else ManagerState.WAITING
            )
        return ManagerState.FRESH

    async def get_access_token(self) -> str:
        """Return a valid access token.

        Raises:
            NotAuthenticatedError: storage holds no login.
            ReauthenticationRequired: the refresh token was rejected for good and the access
                token has expired.
            StorageError: storage cannot be read or written and no valid token is held.
            TokenEndpointError, TokenError, NetworkError: the refresh failed transiently and
                the current token has expired.
        """
        if self._clock() < self._fresh_until:
            return self._token
        return (await self._slow_path()).access_token

    async def get_auth_data(self) -> AuthData:
        """Like `get_access_token()`, returning the whole login (e.g. ``account_id`` for the
        ``ChatGPT-Account-ID`` header)."""
        auth = self._auth
        if self._clock() < self._fresh_until and auth is not None:
            return auth
        return await self._slow_path()

    def report_unauthorized(self, access_token: str) -> None:
        """Tell the manager an API answered 401 to ``access_token``.

        If that token is still the current one, the next calls wait for one refresh (however
        many callers report it); reports about older tokens are ignored.
        """
        if access_token and access_token == self._token:
            log.info("access token reported unauthorized; the next call refreshes")
            self._rejected = access_token
            self._fresh_until = -math.inf
            self._windows = _NONE

    async def refresh(self) -> AuthData:
        """Refresh the current token now (or join the refresh in flight); return the login."""
        if self._auth is None:
            await self._slow_path()
        self.report_unauthorized(self._token)
        return await self._wait()

    # -- the slow path: decide, then serve, start or wait ----------------------------------

    def _serves_at_once(self, now: float) -> bool:
        """True while the cached token may be handed out without waiting for a refresh."""
        return now < self._windows.mandatory

    def _servable(self, now: float) -> bool:
        """True while the cached token has not expired (and no API rejected it)."""
        return now < self._windows.expiry

    def _is_dead(self) -> ReauthenticationRequired | None:
        auth = self._auth
        if self._dead is not None and auth is not None and self._dead[0] == auth.refresh_token:
            return self._dead[1]
        return None

    async def _slow_path(self) -> AuthData:
        if self._closed:
            raise OAuthError("this TokenManager is closed")
        self._start_watcher()
        now = self._clock()
        auth = self._auth
        if auth is not None:
            if now < self._fresh_until:
                return auth
            dead = self._is_dead()
            blocked = dead is not None or now < self._backoff_until
            if self._serves_at_once(now) or (blocked and self._servable(now)):
                if not blocked or self._unsaved is not None:
                    self._start_refresh()
                return auth
        # No token to serve: wait for the task. When the refresh token is dead or we are
        # backing off, the task only re-reads storage (a new login heals us) and raises the
        # remembered error: no request.
        return await self._wait()

    def _start_refresh(self) -> None:
        if self._task is None:
            task = asyncio.create_task(self._run(), name=f"vandamme-oauth refresh {self!r}")
            task.add_done_callback(self._refresh_done)
            self._task = task

    def _refresh_done(self, task: asyncio.Task[AuthData]) -> None:
        if self._task is task:
            self._task = None
        if not task.cancelled():
            task.exception()  # retrieved: a refresh ahead may end with no one waiting
        if self._again:
            self._again = False
            if not self._closed:
                self._start_refresh()

    async def _wait(self) -> AuthData:
        """Start the refresh task unless it runs, and wait for its outcome."""
        self._start_refresh()
        task = self._task
        if task is None:  # pragma: no cover - _start_refresh just set it
            raise OAuthError("no refresh task")
        # shield: a caller that leaves never cancels the task. (It also costs O(1) per
        # waiter; asyncio.wait would unregister each waiter in O(waiters): quadratic.)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                raise OAuthError(
                    "the refresh was abandoned because the TokenManager closed"
                ) from None
            raise
        except Exception as exc:
            raise _fresh(exc) from exc.__cause__

    # -- adopting logins ------------------------------------------------------------------------

    def _adopt(self, auth: AuthData) -> None:
        previous = self._auth
        if previous is not None and auth.refresh_token != previous.refresh_token:
            self._failures = 0  # a new refresh token: earlier failures say nothing of it
            self._backoff_until = -math.inf
        if auth.access_token != self._rejected:
            self._rejected = None
        self._auth = auth
        self._token = auth.access_token
        self._generation += 1
        if auth.access_token == self._rejected:
            self._windows = _NONE
        else:
            self._windows = _Windows.of(
                auth,
                fallback_lifetime=self.provider.fallback_lifetime,
                margin=self.refresh_margin,
                mandatory_margin=self.mandatory_margin,
            )
        self._fresh_until = self._windows.advisory
        if self._unsaved is not None:
            # Come back soon to store what storage refused.
            self._fresh_until = min(self._fresh_until, self._clock() + _UNSAVED_RETRY)

    def _forget(self) -> None:
        self._auth, self._token = None, ""
        self._fresh_until, self._windows = -math.inf, _NONE
        self._generation += 1

    async def _read(self) -> AuthData:
        stored = await self.storage.read_auth()
        if stored is None:
            self._forget()
            raise NotAuthenticatedError(
                f"no {self.provider.name} login is stored; log in first: "
                f"{self.provider.dialect.login_command(self.provider)}"
            )
        return stored

    def _storage_failed(self, exc: StorageError) -> AuthData:
        """Serve the cached token through a storage outage while it has not expired."""
        now = self._clock()
        auth = self._auth
        if auth is None or not self._servable(now):
            raise exc
        log.warning("storage failed (%s); serving the still-valid token", exc)
        self._fresh_until = min(self._windows.mandatory, now + _UNSAVED_RETRY)
        return auth

    # -- the refresh task -------------------------------------------------------------------

    async def _run(self) -> AuthData:
        try:
            stored = await self._read()
            if self._unsaved is None:
                now = self._clock()
                if stored != self._auth:
                    self._adopt(stored)
                    if self._serves_at_once(now) and now >= self._fresh_until:
                        # Callers may have the adopted token now; refresh it in a new task.
                        self._again = True
                        return stored
                if now < self._fresh_until:
                    return stored
                if self._is_dead() is not None or now < self._backoff_until:
                    return self._serve_or_raise(now)
            async with self.storage.lock():
                return await self._refresh_locked()
        except StorageError as exc:
            return self._storage_failed(exc)

    def _serve_or_raise(self, now: float) -> AuthData:
        auth = self._auth
        if auth is not None and self._servable(now):
            return auth
        error = self._is_dead() or self._last_error
        if error is None:  # pragma: no cover - only reached with one of the two set
            raise OAuthError("no valid token and no refresh possible")
        raise _fresh(error)

    async def _persist_unsaved(self, latest: AuthData) -> AuthData:
        if self._unsaved is None:  # pragma: no cover - the caller checked
            return latest
        base, new = self._unsaved
        if latest == base:
            await self.storage.write_auth(new)
            log.info("stored the refreshed login that an earlier write failed to save")
            latest = new
        else:
            log.warning("storage changed since our unsaved refresh; adopting the stored login")
        self._unsaved = None
        self._adopt(latest)
        return latest

    async def _refresh_locked(self) -> AuthData:
        latest = await self._read()
        if self._unsaved is not None:
            latest = await self._persist_unsaved(latest)
        elif latest != self._auth:
            self._adopt(latest)
        now = self._clock()
        if now < self._fresh_until:
            log.info("adopted a token stored by another process")
            return latest
        if self._is_dead() is not None:
            return self._serve_or_raise(now)
        try:
            new = await self._tokens.refresh(latest)
        except ReauthenticationRequired as exc:
            return await self._rejected_for_good(latest, exc)
        except _TRANSIENT as exc:
            if isinstance(exc, TokenError) and exc.salvage is not None:
                await self._store(latest, exc.salvage)
            self._back_off(exc)
            return self._serve_or_raise(self._clock())
        self._failures = 0
        self._backoff_until = -math.inf
        self._rejected = None
        await self._store(latest, new)
        return new

    async def _store(self, base: AuthData, new: AuthData) -> None:
        """Write ``new`` (which replaces ``base``) and serve it. The server has already
        rotated the refresh token, so whatever the write does, ``new`` is kept."""
        try:
            await self.storage.write_auth(new)
        except Exception as exc:
            log.error(
                "the refreshed login could not be stored (%s); holding it in memory",
                exc if isinstance(exc, OAuthError) else type(exc).__name__,
            )
            self._unsaved = (base, new)
        self._adopt(new)

    async def _rejected_for_good(self, latest: AuthData, exc: ReauthenticationRequired) -> AuthData:
        newer = await self.storage.read_auth()
        if newer is not None and newer.refresh_token != latest.refresh_token:
            log.info("refresh token rejected, but a newer login is stored; adopting it")
            self._adopt(newer)
            return newer
        log.error("%s", exc)
        self._dead = (latest.refresh_token, exc)
        return self._serve_or_raise(self._clock())

    def _back_off(self, exc: OAuthError) -> None:
        # The library's one backoff formula, but not stamina's loop: this is a gate that
        # keeps later callers from starting a refresh too soon, not a loop around one call
        # (and a refresh that may have reached the server is never repeated by itself).
        self._failures += 1
        retry_after = getattr(exc, "retry_after", None)
        delay = Backoff(1.0, self.max_backoff).delay(
            self._failures, retry_after if isinstance(retry_after, float) else None
        )
        self._backoff_until = self._clock() + delay  # from the END of the failed attempt
        self._last_error = exc
        log.warning("refresh failed (%s); next attempt in %.0f s", exc, delay)

    # -- watching storage -------------------------------------------------------------------

    def _start_watcher(self) -> None:
        if self._watcher is not None or self._closed or self.watch_interval is None:
            return
        source = (
            self.storage.changes(interval=self.watch_interval)
            if isinstance(self.storage, Watchable)
            else _poll(self.storage, self.watch_interval)
        )
        self._watcher = asyncio.create_task(
            _watch(weakref.ref(self), source), name=f"vandamme-oauth watcher {self!r}"
        )
        # A manager dropped without aclose() still stops its watcher.
        weakref.finalize(self, self._watcher.cancel)

    async def _storage_changed(self) -> None:
        """Adopt a login someone else wrote (or forget it on a logout)."""
        task = self._task
        if task is not None:
            await asyncio.wait({task})  # the refresh adopts storage itself; look afterwards
        generation = self._generation
        try:
            stored = await self.storage.read_auth()
        except StorageError as exc:
            log.debug("the watcher could not read storage: %s", exc)
            return
        if generation != self._generation or self._task is not None or self._unsaved:
            return  # we changed meanwhile; our view is at least as new
        if stored is None:
            if self._auth is not None:
                log.info("the login was removed from storage (logged out)")
                self._forget()
        elif stored != self._auth:
            if self._auth is not None:
                log.info("adopted a login stored by another process")
            self._adopt(stored)


async def _watch(ref: weakref.ref[TokenManager], changes: AsyncGenerator[None, None]) -> None:
    """Feed storage changes to the manager while it lives (a weak reference: a manager
    that is dropped without ``aclose()`` still ends its watcher)."""
    async with contextlib.aclosing(changes):
        async for _ in changes:
            manager = ref()
            if manager is None:
                return
            try:
                await manager._storage_changed()
            except Exception:
                log.exception("the storage watcher failed to adopt a change")
            del manager


async def _poll(storage: AuthStorage, interval: float) -> AsyncGenerator[None, None]:
    """For backends that cannot notify: read the login every ``interval`` seconds and yield
    when it differs from the last reading."""
    last: object = None
    with contextlib.suppress(StorageError):
        last = await storage.read_auth()
    while True:
        await asyncio.sleep(interval)
        try:
            current = await storage.read_auth()
        except StorageError:
            continue
        if current != last:
            last = current
            yield
