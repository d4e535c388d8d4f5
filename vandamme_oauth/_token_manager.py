"""TokenManager: a valid access token on the hot path; refreshes are the manager's own work.

Every call is decided by one pure function, ``decide(now, snapshot)`` in
`vandamme_oauth._manager_policy`, which also says what ``manager.state`` reports. The manager
stores its phase (empty, active, backing off, dead, misconfigured) and changes it in the few
places that cause a change: adopting a login, the outcome of a refresh, a logout.

How a call moves between the states ([`ManagerState`][vandamme_oauth.ManagerState]):

- **FRESH**: before the advisory instant (``refresh_margin`` before expiry),
  ``get_access_token()`` reads the clock once, compares it with one float and returns the
  cached token: no lock, no I/O, no suspension.
- **REFRESHING_AHEAD**: from advisory to mandatory (``mandatory_margin`` before expiry) the
  first call starts ONE refresh in a task the manager owns and every call, that one included,
  gets the current token at once. A token endpoint that hangs never delays them.
- **WAITING**: from mandatory on (and with no login loaded yet, or after an API reported the
  token unauthorized), callers await the refresh's result, each on a plain future that the
  refresh sets (O(1) per waiter and per cancellation). A caller that is cancelled or times
  out leaves; the refresh goes on.
- **BACKING_OFF**: a transient failure (5xx, 429, network, a broken answer) keeps serving the
  token while it has not expired, and no new refresh starts until the backoff, measured from
  the END of the failed attempt (``Retry-After`` honoured up to ``max_backoff``), is over.
  An expired token is never served: callers then get the failure.
- **DEAD**: the provider rejected the refresh token for good. The still-valid token is served
  until it expires, then [`ReauthenticationRequired`][vandamme_oauth.ReauthenticationRequired] is
  raised without a request, until storage holds another refresh token (a new login).
- **MISCONFIGURED**: the provider refused the client itself (a non-transient 4xx such as
  ``invalid_client``: a deleted client, a rotated secret). Never retried by itself; the token
  is served until it expires, then an error naming the fix, without a request; a new login
  in storage heals it.
- **HOLDING_UNSAVED**: a refreshed login that storage refused is served from memory and
  offered to storage again about once a second.
- **EMPTY**: nothing loaded yet, or the login was removed from storage (a logout).

Time: each adopted login's absolute ``expires_at`` is anchored once to a steady clock (Linux
``CLOCK_BOOTTIME``: it neither steps with NTP nor stops during suspend), so a wall clock
stepped back never keeps an expired token fresh. A refresh starts at most once per
``min_refresh_interval`` (1 s) per login, so a provider issuing tokens that live less than a
round trip gets no hot loop, and a token is never served past its expiry: a waiter handed a
token that expired on arrival gets `TokenLifetimeError`.

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
import logging
import math
import random
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any, Self

from . import _telemetry as telemetry
from ._backoff import Backoff
from ._closing import AsyncClosing
from ._endpoints import DEFAULT_MAX_REFRESHES
from ._exceptions import (
    HttpError,
    NetworkError,
    NotAuthenticatedError,
    OAuthError,
    ReauthenticationRequired,
    StorageError,
    TokenEndpointError,
    TokenError,
    TokenLifetimeError,
)
from ._manager_policy import (
    NO_WINDOWS,
    Action,
    ManagerState,
    Phase,
    Snapshot,
    Windows,
    decide,
    hot_until,
    join_from,
    state_of,
)
from ._times import steady_clock as _platform_steady_clock
from ._token_client import TokenClient
from .storage._base import ConditionalWrite, KnowsLogouts, Preparable, Watchable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Coroutine

    import httpx

    from ._http_client import RetryPolicy
    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["ManagerState", "TokenManager"]

log = logging.getLogger(__name__)

_REFRESH_ERRORS = (TokenError, HttpError, NetworkError)
_UNSAVED_RETRY = 1.0  # seconds before a call tries again to store a login held in memory


def _fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` to raise in one more caller: re-raising one object in many tasks
    would pile every caller's traceback onto it."""
    new = type(exc).__new__(type(exc))
    new.args = exc.args
    if hasattr(exc, "__dict__"):
        new.__dict__.update(exc.__dict__)
    new.__cause__ = exc.__cause__
    return new


def _transient(exc: OAuthError) -> bool:
    """Whether trying again later may succeed: the error's own ``transient`` flag (HTTP and
    network errors); an unusable answer (a plain `TokenError`) may be better next time."""
    if isinstance(exc, HttpError | NetworkError):
        return bool(exc.transient)
    return True


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
        clock: Wall clock in seconds since the epoch (injectable for tests): what stored
            times are read and written in.
        steady_clock: The clock expiry is counted on once a login is adopted: one that
            neither steps nor stops during suspend (default: Linux ``CLOCK_BOOTTIME``, macOS
            ``CLOCK_MONOTONIC``, else `time.monotonic`; with a custom ``clock`` and no
            ``steady_clock``, that ``clock``).
        http_client: An AsyncClient for the token endpoint (not closed by us).
        retry: Retry policy for requests that are safe to repeat.
        max_backoff: Upper bound, seconds, between refresh attempts after transient failures
            (``Retry-After`` is honoured up to this bound).
        min_refresh_interval: At most one refresh starts per this many seconds (default 1):
            a provider whose tokens live less than a round trip gets no hot loop.
        max_refreshes: Refreshes in flight at once to this token endpoint, for all the
            managers of this event loop (the first manager's bound holds; default 16). A
            429 from the endpoint pauses every refresh there for its ``Retry-After``.
        refresh_jitter: Each adopted login's advisory instant moves earlier by a random
            fraction of its lifetime up to this (default 0.05, never past the mandatory
            instant), so logins obtained together do not all refresh together.
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
        steady_clock: Callable[[], float] | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        max_backoff: float = 60.0,
        min_refresh_interval: float = 1.0,
        refresh_jitter: float = 0.05,
        max_refreshes: int = DEFAULT_MAX_REFRESHES,
        watch_interval: float | None = 0.5,
        close_timeout: float = 10.0,
    ) -> None:
        self.provider = provider
        self.storage = storage
        self.refresh_margin = refresh_margin
        self.mandatory_margin = mandatory_margin
        self.max_backoff = max_backoff
        self.min_refresh_interval = min_refresh_interval
        self.refresh_jitter = refresh_jitter
        self.watch_interval = watch_interval
        self.close_timeout = close_timeout
        self._clock = clock
        if steady_clock is None:
            steady_clock = _platform_steady_clock if clock is time.time else clock
        self._now = steady_clock
        self._tokens = TokenClient(
            provider,
            http_client=http_client,
            retry=retry,
            clock=clock,
            max_refreshes=max_refreshes,
        )
        # The hot path reads only _token and _serve_until (both set by _decided()).
        self._token = ""
        self._serve_until = -math.inf
        self._join_from = math.inf
        # The state: the phase and what the decisions read (see _snapshot()).
        self._phase = Phase.EMPTY
        self._auth: AuthData | None = None
        self._windows = NO_WINDOWS
        self._backoff_until = -math.inf  # after a transient failure or a storage outage
        self._floor_until = -math.inf  # the rate floor: min_refresh_interval after a refresh
        self._rejected: str | None = None  # an access token an API answered 401 to
        self._stopped_by: OAuthError | None = None  # DEAD, MISCONFIGURED, BACKING_OFF: why
        self._failures = 0
        # A refreshed login the storage refused: (the login it replaces, the new login).
        self._unsaved: tuple[AuthData, AuthData] | None = None
        self._store_retry_at = -math.inf
        self._generation = object()  # replaced whenever _auth changes (the watcher checks it)
        self._last_round_trip = 0.0
        # Owned tasks and the callers waiting on the refresh, each on its own future.
        self._task: asyncio.Task[AuthData] | None = None
        self._waiters: dict[asyncio.Future[AuthData], None] = {}  # in arrival order
        # The callers that waited on the running refresh (those that left included), and
        # when the first began: the refresh's end records them once, however many.
        self._waited = 0
        self._wait_began = 0.0
        self._forced = False  # the running refresh was asked for by refresh()
        self._watcher: asyncio.Task[None] | None = None
        self._again = False  # start another refresh when this one ends
        self._starting = False  # a refresh task is being made (its first step runs)
        self._closed = False
        # Telemetry (the otel extra): attributes made once; the outcome of the refresh
        # under way, noted where it is decided and recorded when the task ends.
        self._telemetry = telemetry.enabled()
        self._attributes: dict[str, str] = {}
        if self._telemetry:
            self._attributes = telemetry.provider_attributes(provider)
            telemetry.track_manager(self)
        self._outcome: tuple[str, str | None] | None = None

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
            _, stuck = await asyncio.wait({watcher}, timeout=self.close_timeout)
            if stuck:  # a storage client swallowed the cancellation: do not wait for ever
                log.warning("the storage watcher did not stop within %g s", self.close_timeout)
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
        """Where the manager stands now (see [`ManagerState`][vandamme_oauth.ManagerState]):
        read from the same decision every call makes."""
        return state_of(self._now(), self._snapshot())

    async def get_access_token(self) -> str:
        """Return a valid access token.

        Raises:
            NotAuthenticatedError: storage holds no login.
            ReauthenticationRequired: the refresh token was rejected for good and the access
                token has expired.
            StorageError: storage cannot be read or written and no valid token is held.
            TokenEndpointError, TokenError, NetworkError: the refresh failed (and the current
                token has expired); `TokenLifetimeError` when the provider's tokens expire
                before they arrive.
        """
        now = self._now()
        if now < self._serve_until:
            return self._token
        if now >= self._join_from:
            # A refresh runs and this call must wait for it: `_wait()`, inline. A storm's
            # callers then keep one coroutine less each alive while they wait: fewer objects
            # for the garbage collector to promote and walk (measured: with 10,000 callers,
            # 7 objects per caller instead of 8, and often one full collection less).
            waiter = self._enlist()
            try:
                return (await waiter).access_token
            except asyncio.CancelledError:
                self._leave(waiter)
                raise
        return (await self._slow_path()).access_token

    async def get_auth_data(self) -> AuthData:
        """Like `get_access_token()`, returning the whole login (e.g. ``account_id`` for the
        ``ChatGPT-Account-ID`` header)."""
        auth = self._auth
        if self._now() < self._serve_until and auth is not None:
            return auth
        return await self._slow_path()

    def report_unauthorized(self, access_token: str) -> None:
        """Tell the manager an API answered 401 to ``access_token``.

        If that token is still the current one, the next calls wait for one refresh (however
        many callers report it); reports about older tokens are ignored.
        """
        if access_token and access_token == self._token and access_token != self._rejected:
            log.info("access token reported unauthorized; the next call refreshes")
            self._rejected = access_token
            self._decided()

    async def refresh(self) -> AuthData:
        """Refresh the current token now (or join the refresh in flight) and return the new
        login. Other callers keep getting the current token meanwhile, and keep getting it if
        this refresh fails while it is still valid.

        Raises:
            OAuthError: the refresh's error (as for `get_access_token()`), even while the
                current token is still valid.
        """
        if self._auth is None:
            await self._slow_path()
        if self._task is None:
            self._forced = True
        return await self._wait()

    # -- the decisions ------------------------------------------------------------------------

    def _snapshot(self, *, in_task: bool = False) -> Snapshot:
        """What the decisions read; ``in_task``: as the refresh task sees it (it does not
        wait for itself)."""
        return Snapshot(
            phase=self._phase,
            windows=self._windows,
            retry_at=max(self._backoff_until, self._floor_until),
            rejected=self._rejected is not None and self._rejected == self._token,
            unsaved=self._unsaved is not None,
            store_retry_at=self._store_retry_at,
            refreshing=self._task is not None and not in_task,
        )

    def _task_decision(self) -> Action:
        """The decision as the refresh task sees it (it does not wait for itself)."""
        return decide(self._now(), self._snapshot(in_task=True))

    def _decided(self) -> None:
        """Recompute the hot path's bound, and the instant from which calls join the
        running refresh without a decision, after a change of state."""
        snapshot = self._snapshot()
        self._serve_until = hot_until(snapshot)
        self._join_from = join_from(snapshot)

    def _set_phase(self, phase: Phase, reason: OAuthError | None = None) -> None:
        self._phase = phase
        self._stopped_by = reason

    async def _slow_path(self) -> AuthData:
        if self._closed:
            raise OAuthError("this TokenManager is closed")
        now = self._now()
        if now >= self._join_from:  # a refresh runs and this call must wait for it
            return await self._wait()
        self._start_watcher()
        auth = self._auth
        action = decide(now, self._snapshot())
        if auth is not None and action is Action.SERVE:
            return auth
        if auth is not None and action is Action.SERVE_AND_REFRESH:
            self._start_refresh()
            return auth
        return await self._wait()

    def _start_refresh(self) -> None:
        if self._task is None and not self._starting:
            self._starting = True  # the task's first step runs inside this call
            try:
                task = _eager_task(self._run(), name=f"vandamme-oauth refresh {self!r}")
            finally:
                self._starting = False
            task.add_done_callback(self._refresh_done)
            self._task = task
            self._decided()

    def _refresh_done(self, task: asyncio.Task[AuthData]) -> None:
        if self._task is task:
            self._task = None
            self._forced = False
        waiters, self._waiters = self._waiters, {}
        waited, self._waited = self._waited, 0
        waited_for = self._now() - self._wait_began  # read if anyone waited
        # The outcome is decided once, here: a storm of waiters wakes to it and decides nothing.
        outcome: AuthData | BaseException
        if task.cancelled():
            outcome = OAuthError("the refresh was abandoned because the TokenManager closed")
        elif (exc := task.exception()) is not None:  # retrieved: no one may be waiting
            outcome = exc
        else:
            outcome = task.result()
            if outcome is self._auth and not self._now() < self._windows.expiry:
                outcome = self._expired_in_transit(outcome)
        if isinstance(outcome, BaseException):
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(_fresh(outcome))
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(outcome)
        self._decided()
        if self._again:
            self._again = False
            if not self._closed:
                self._start_refresh()
        if waited and self._telemetry:  # last: whatever telemetry does, the state is settled
            self._record_waits(waited, waited_for)

    async def _wait(self) -> AuthData:
        """Start the refresh task unless it runs, and wait for its outcome on a future of
        this caller's own: leaving (a cancellation, a timeout) costs O(1) and never
        cancels the refresh. `_refresh_done` decides the outcome every waiter gets."""
        waiter = self._enlist()
        try:
            return await waiter
        except asyncio.CancelledError:
            self._leave(waiter)
            raise

    def _enlist(self) -> asyncio.Future[AuthData]:
        """Start the refresh task unless it runs; a future of the caller's own that the
        refresh's end sets. Waiters are woken in arrival order (the tasks' memory order)."""
        self._start_refresh()
        waiter: asyncio.Future[AuthData] = asyncio.get_running_loop().create_future()
        self._waiters[waiter] = None
        if not self._waited:
            self._wait_began = self._now()
        self._waited += 1
        return waiter

    def _leave(self, waiter: asyncio.Future[AuthData]) -> None:
        """The waiter's caller left (cancelled): forget its future, in O(1)."""
        self._waiters.pop(waiter, None)

    def _record_waits(self, waited: int, duration: float) -> None:
        """Record the wait a refresh caused, once: ``duration`` since the first of the
        ``waited`` callers began to wait (on the manager's steady clock). Per caller, a storm
        of 10,000 would block the loop for 10,000 recordings (about 120 ms with the SDK)."""
        tools = telemetry.instruments()
        tools.wait_duration.record(max(0.0, duration), self._attributes)  # a clock stepped back
        tools.waiters.add(waited, self._attributes)

    def _expired_in_transit(self, auth: AuthData) -> TokenLifetimeError:
        """The error every waiter gets when our refresh's token expired before it arrived."""
        return TokenLifetimeError(
            f"the provider issued a token that lived {_lifetime(auth):.3g} s, less than the "
            f"round trip ({self._last_round_trip:.3g} s): it expired before it could be "
            "served. Check the provider's access-token lifetime"
        )

    # -- adopting logins ------------------------------------------------------------------------

    def _adopt(self, auth: AuthData, *, ours: bool = False) -> None:
        """Serve ``auth`` from now on: a login read from storage, or (``ours``) the one our
        own refresh just produced."""
        previous = self._auth
        if previous is None or auth.refresh_token != previous.refresh_token:
            # A new refresh token: what failed with the old one says nothing of it. The rate
            # floor is about our own refreshes: a login from elsewhere lifts it.
            self._failures = 0
            self._backoff_until = -math.inf
            if not ours:
                self._floor_until = -math.inf
            self._set_phase(Phase.ACTIVE)
        if auth.access_token != self._rejected:
            self._rejected = None
        self._auth = auth
        self._token = auth.access_token
        self._generation = object()
        wall = self._clock()
        expires_at = (
            auth.expires_at
            if auth.expires_at is not None
            else auth.last_refresh + self.provider.fallback_lifetime
        )
        self._windows = Windows.of(
            expires_at=expires_at,
            last_refresh=auth.last_refresh,
            wall_now=wall,
            steady_now=self._now(),
            margin=self.refresh_margin,
            mandatory_margin=self.mandatory_margin,
            jitter=random.random() * self.refresh_jitter,  # noqa: S311 - spread, not a secret
        )
        self._decided()

    def _forget(self) -> None:
        self._auth, self._token = None, ""
        self._windows = NO_WINDOWS
        self._set_phase(Phase.EMPTY)
        self._backoff_until = -math.inf
        self._generation = object()
        self._decided()

    async def _read(self) -> AuthData:
        return self._present(await self.storage.read_auth())

    def _present(self, stored: AuthData | None) -> AuthData:
        """``stored``, or (storage holds no login: a logout) forget ours and say so."""
        if stored is None:
            self._forget()
            raise NotAuthenticatedError(
                f"no {self.provider.name} login is stored; log in first: "
                f"{self.provider.dialect.login_command(self.provider)}"
            )
        return stored

    async def _data_lost(self, stored: AuthData | None) -> bool:
        """Storage holds no login although we hold one and nobody logged out: data loss
        (a Redis flush or restart), not a logout."""
        return (
            stored is None
            and self._auth is not None
            and isinstance(self.storage, KnowsLogouts)
            and not await self.storage.logged_out()
        )

    async def _restore_locked(self) -> AuthData:
        """Under the lock: write back the login we hold, the newest there is (a refresh
        storage refused is held as ``_auth`` too, until it is stored)."""
        held = self._auth
        assert held is not None  # noqa: S101 - _data_lost() checked
        await self.storage.write_auth(held)
        log.warning("the login vanished from storage without a logout (data loss); restored it")
        self._unsaved = None
        self._decided()
        return held

    def _storage_failed(self, exc: StorageError) -> AuthData:
        """Serve the cached token through a storage outage while it has not expired."""
        now = self._now()
        auth = self._auth
        if (
            self._forced
            or auth is None
            or self._rejected == self._token
            or not now < self._windows.expiry
        ):
            raise exc
        log.warning("storage failed (%s); serving the still-valid token", exc)
        # Look at storage again in a second (no new refresh before; the token is served).
        self._backoff_until = max(self._backoff_until, now + _UNSAVED_RETRY)
        self._decided()
        return auth

    # -- the refresh task -------------------------------------------------------------------

    async def _run(self) -> AuthData:
        try:
            found = await self.storage.read_auth()
            if await self._data_lost(found):  # restored under the lock
                return await self._locked()
            stored = self._present(found)
            if self._unsaved is None:
                if stored != self._auth:
                    renewed = stored.access_token != self._token
                    self._adopt(stored)
                    action = self._task_decision()
                    if action is Action.SERVE_AND_REFRESH and not self._forced:
                        # Callers may have the adopted token now; refresh it in a new task.
                        self._again = True
                        return stored
                    if action is Action.SERVE and (renewed or not self._forced):
                        return stored  # another process refreshed: that is our refresh too
                action = self._task_decision()
                if action is Action.RECHECK or (action is Action.SERVE and not self._forced):
                    return self._serve_or_raise()
            return await self._locked()
        except StorageError as exc:
            self._record_storage_failure(exc)
            return self._storage_failed(exc)

    async def _locked(self) -> AuthData:
        """Refresh under the storage lock; with the otel extra, as a span with the lock
        wait as an event, and the outcome counted."""
        if not self._telemetry:
            async with self.storage.lock():
                return await self._refresh_locked()
        self._outcome = None
        started = time.monotonic()
        with telemetry.span("vandamme_oauth.refresh", self._attributes) as current:
            async with self.storage.lock():
                waited = time.monotonic() - started
                backend = {"vandamme_oauth.storage.backend": _backend(self.storage)}
                telemetry.instruments().lock_wait.record(waited, backend)
                current.add_event("storage.lock.acquired", {"vandamme_oauth.lock.wait": waited})
                try:
                    result = await self._refresh_locked()
                finally:
                    noted = self._take_outcome()
                    if noted is not None:
                        current.set_attribute("vandamme_oauth.outcome", noted[0])
                        self._record(*noted, duration=time.monotonic() - started)
            return result

    def _take_outcome(self) -> tuple[str, str | None] | None:
        outcome, self._outcome = self._outcome, None
        return outcome

    def _note(self, outcome: str, exc: BaseException | None = None) -> None:
        """Remember how the refresh under way ended (recorded by `_locked`)."""
        if self._telemetry:
            self._outcome = (outcome, None if exc is None else telemetry.error_type(exc))

    def _record(self, outcome: str, error: str | None, *, duration: float | None = None) -> None:
        if not self._telemetry:
            return
        tools = telemetry.instruments()
        attributes = {**self._attributes, "vandamme_oauth.outcome": outcome}
        if error is not None:
            attributes["error.type"] = error
        tools.refreshes.add(1, attributes)
        if duration is not None:
            tools.refresh_duration.record(duration, attributes)

    def _record_storage_failure(self, exc: StorageError) -> None:
        """A refresh that storage stopped: counted as a refresh and as a storage error."""
        if not self._telemetry:
            return
        error = telemetry.error_type(exc)
        self._record("storage_failure", error)
        backend = {"vandamme_oauth.storage.backend": _backend(self.storage)}
        telemetry.instruments().storage_errors.add(1, {**backend, "error.type": error})

    def _serve_or_raise(self) -> AuthData:
        """The current login while it may be served; else the error that stops refreshes."""
        auth = self._auth
        valid = self._rejected != self._token and self._now() < self._windows.expiry
        if auth is not None and valid and not self._forced:
            return auth
        error = self._stopped_by
        if error is None:  # only the rate floor stopped us
            error = self._floor_error(auth)
        if isinstance(error, TokenEndpointError) and self._phase is Phase.MISCONFIGURED:
            raise self._misconfigured_error(error)
        raise _fresh(error)

    def _floor_error(self, auth: AuthData | None) -> OAuthError:
        wait = max(self._floor_until - self._now(), 0.0)
        if auth is not None and self._rejected == self._token:
            return TokenError(
                f"an API rejected the token refreshed less than {self.min_refresh_interval:g} s "
                f"ago; the next refresh may start in {wait:.2g} s (min_refresh_interval)"
            )
        if auth is None:  # pragma: no cover - the floor is set only by a refresh of a login
            return OAuthError("no login is loaded")
        return TokenLifetimeError(
            f"the provider's tokens live {_lifetime(auth):.3g} s, and a refresh starts at most "
            f"once per {self.min_refresh_interval:g} s (min_refresh_interval): the next may "
            f"start in {wait:.2g} s. Check the provider's access-token lifetime"
        )

    def _misconfigured_error(self, error: TokenEndpointError) -> TokenEndpointError:
        new = _fresh(error)
        assert isinstance(new, TokenEndpointError)  # noqa: S101 - _fresh keeps the type
        new.message = (
            f"{error}; the provider refuses this client: check its client id and secret "
            f"(register it again if it was deleted), then log in again: "
            f"{self.provider.dialect.login_command(self.provider)}"
        )
        new.args = (new.message,)
        return new

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
        found = await self.storage.read_auth()
        renewed = False  # storage gave us a newer token: that is a forced refresh too
        if await self._data_lost(found):
            latest = await self._restore_locked()
        elif self._unsaved is not None:
            latest = await self._persist_unsaved(self._present(found))
        else:
            latest = self._present(found)
            if latest != self._auth:
                renewed = latest.access_token != self._token
                self._adopt(latest)
                log.info("adopted a login stored by another process")
        if self._task_decision() is Action.SERVE and (renewed or not self._forced):
            if renewed:
                self._note("adopted")
            return latest  # nothing (more) to do: another process refreshed, or not due
        if self._phase in (Phase.DEAD, Phase.MISCONFIGURED):
            return self._serve_or_raise()
        started = self._now()
        if self._telemetry:
            telemetry.instruments().remaining_lifetime.record(
                max(self._windows.expiry - started, 0.0), self._attributes
            )
        try:
            new = await self._tokens.refresh(latest)
        except ReauthenticationRequired as exc:
            return await self._rejected_for_good(latest, exc)
        except _REFRESH_ERRORS as exc:
            if isinstance(exc, TokenError) and exc.salvage is not None:
                await self._store(latest, exc.salvage)
                if self._auth is not exc.salvage:  # lost to a logout or another login
                    raise
            if _transient(exc):
                self._note("transient_failure", exc)
                self._back_off(exc)
            else:
                self._note("permanent_failure", exc)
                log.error("the provider refused the client: %s", exc)
                self._set_phase(Phase.MISCONFIGURED, exc)
            self._decided()
            if self._forced:
                raise
            return self._serve_or_raise()
        self._last_round_trip = self._now() - started
        self._failures = 0
        self._set_phase(Phase.ACTIVE)
        self._rejected = None
        # The rate floor: the next refresh starts no sooner (failures have their backoff).
        self._floor_until = started + self.min_refresh_interval
        self._note("success")
        return await self._store(latest, new)

    async def _store(self, base: AuthData, new: AuthData) -> AuthData:
        """Write ``new`` over ``base`` and serve it; return what is served. The server has
        already rotated the refresh token, so whatever the write does, ``new`` is kept,
        unless storage no longer holds ``base`` (compare-and-swap, where the backend can):
        a logout or another program's login won the race, and ``new`` is dropped, never
        written, and revoked."""
        try:
            if isinstance(self.storage, ConditionalWrite):
                written = await self.storage.replace_auth(base, new)
            else:
                await self.storage.write_auth(new)
                written = True
        except Exception as exc:
            log.error(
                "the refreshed login could not be stored (%s); holding it in memory",
                exc if isinstance(exc, OAuthError) else type(exc).__name__,
            )
            self._unsaved = (base, new)
            self._store_retry_at = self._now() + _UNSAVED_RETRY
        else:
            if not written:
                return await self._lost_the_race(new)
        self._adopt(new, ours=True)
        return new

    async def _lost_the_race(self, new: AuthData) -> AuthData:
        """Storage changed while we refreshed: drop ``new`` (revoked, best effort, so the
        refresh token a logout did not see dies too) and follow storage."""
        log.warning("the login changed in storage while it was refreshed; dropping the refresh")
        with contextlib.suppress(OAuthError, TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await self._tokens.revoke(new)
        stored = self._present(await self.storage.read_auth())  # a logout: NotAuthenticated
        self._adopt(stored)
        return stored

    async def _rejected_for_good(self, latest: AuthData, exc: ReauthenticationRequired) -> AuthData:
        newer = await self.storage.read_auth()
        if newer is not None and newer.refresh_token != latest.refresh_token:
            log.info("refresh token rejected, but a newer login is stored; adopting it")
            self._note("adopted")
            self._adopt(newer)
            return newer
        self._note("permanent_failure", exc)
        log.error("%s", exc)
        self._set_phase(Phase.DEAD, exc)
        self._decided()
        if self._forced:
            raise exc
        return self._serve_or_raise()

    def _back_off(self, exc: OAuthError) -> None:
        # The library's one backoff formula, but not stamina's loop: this is a gate that
        # keeps later callers from starting a refresh too soon, not a loop around one call
        # (and a refresh that may have reached the server is never repeated by itself).
        self._failures += 1
        retry_after: float | None = getattr(exc, "retry_after", None)
        delay = Backoff(1.0, self.max_backoff).delay(self._failures, retry_after)
        self._backoff_until = self._now() + delay  # from the END of the failed attempt
        self._set_phase(Phase.BACKING_OFF, exc)
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
        if generation is not self._generation or self._task is not None or self._unsaved:
            return  # we changed meanwhile; our view is at least as new
        if stored is None:
            try:
                lost = await self._data_lost(stored)
            except StorageError as exc:
                log.debug("the watcher could not read storage: %s", exc)
                return
            if lost:
                self._start_refresh()  # the task writes our login back, under the lock
            elif self._auth is not None:
                log.info("the login was removed from storage (logged out)")
                self._forget()
        elif stored != self._auth:
            if self._auth is not None:
                log.info("adopted a login stored by another process")
            self._adopt(stored)


def _eager_task(coroutine: Coroutine[Any, Any, AuthData], *, name: str) -> asyncio.Task[AuthData]:
    """A task that runs at once until its first suspension (Python 3.12+): in a storm, the
    refresh reads storage and starts opening its connection in the first caller's step, so
    the connection is being made while the other callers take theirs. (The request itself
    leaves after them: httpx yields before it writes.)"""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coroutine, loop=loop, name=name, eager_start=True)
    return loop.create_task(coroutine, name=name)  # pragma: no cover - Python 3.11


def _backend(storage: object) -> str:
    """A storage's backend name for telemetry: its class name less ``AuthStorage``."""
    return type(storage).__name__.removesuffix("AuthStorage").lower() or "custom"


def _lifetime(auth: AuthData) -> float:
    """How long ``auth``'s token lives from its refresh (0 when no expiry is known)."""
    return max((auth.expires_at or auth.last_refresh) - auth.last_refresh, 0.0)


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
