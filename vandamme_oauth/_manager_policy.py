"""The token manager's decisions, sans I/O: one pure function from (now, snapshot) to what a
call does, in the manner of h11's state machine (``h11/_state.py``): everything that affects
a decision lives in the `Snapshot`, and every decision is made here.

Times are seconds on the manager's steady clock (one that neither steps nor stops during
suspend, see `vandamme_oauth._times.steady_clock`), to which each adopted login's absolute
``expires_at`` is anchored once, when the login is adopted.

A login's three instants (`Windows`)::

    adopted ........... advisory ......... mandatory ...... expiry
        │     fresh        │  refreshing ahead  │  waiting     │  expired: waiting
        │  (hot path)      │  (served at once)  │  (for the    │  (never served)
                                                   refresh)

The phases (`Phase`) are what happened to the login's refresh token; the states a user sees
([`ManagerState`][vandamme_oauth.ManagerState]) are `state_of()` the phase, the windows and
the clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "NO_WINDOWS",
    "Action",
    "ManagerState",
    "Phase",
    "Snapshot",
    "Windows",
    "decide",
    "hot_until",
    "state_of",
]


class ManagerState(enum.Enum):
    """Where a [`TokenManager`][vandamme_oauth.TokenManager] stands (``manager.state``)."""

    #: No login loaded: nothing was read yet, or storage holds none (a logout). The next call
    #: reads storage and raises `NotAuthenticatedError` when it is still empty.
    EMPTY = "empty"
    FRESH = "fresh"  #: the cached token is served on the hot path
    REFRESHING_AHEAD = "refreshing ahead"  #: a refresh runs or is due; callers get the token
    WAITING = "waiting"  #: callers wait for a refresh (mandatory window, expired, or rejected)
    BACKING_OFF = "backing off"  #: the last refresh failed transiently; no retry until later
    DEAD = "dead"  #: the refresh token was rejected; a new login is needed
    #: The provider refused the client itself (a 4xx such as ``invalid_client``): no automatic
    #: retry; the token is served until it expires, then an error naming the fix.
    MISCONFIGURED = "misconfigured"
    #: A refreshed login that storage refused is held in memory, served, and offered to
    #: storage again about once a second.
    HOLDING_UNSAVED = "holding an unsaved login"


class Phase(enum.Enum):
    """What is known of the adopted login's refresh token (the manager's stored phase)."""

    EMPTY = "empty"  #: no login adopted
    ACTIVE = "active"  #: it works, as far as we know
    BACKING_OFF = "backing off"  #: its last refresh failed transiently
    DEAD = "dead"  #: the provider rejected it for good
    MISCONFIGURED = "misconfigured"  #: the provider refused the client


class Action(enum.Enum):
    """What a call does."""

    SERVE = "serve"  #: return the cached token
    SERVE_AND_REFRESH = "serve and refresh"  #: start the refresh task (unless it runs); serve
    WAIT = "wait"  #: await the refresh task's result
    #: No refresh may start and no token may be served: the task only reads storage (a new
    #: login there heals the manager) and raises the error that stopped the refreshes.
    RECHECK = "recheck"


@dataclass(frozen=True, slots=True)
class Windows:
    """The instants of one adopted login, on the steady clock."""

    advisory: float
    mandatory: float
    expiry: float

    @classmethod
    def of(
        cls,
        *,
        expires_at: float,
        last_refresh: float,
        wall_now: float,
        steady_now: float,
        margin: float,
        mandatory_margin: float,
        jitter: float = 0.0,
    ) -> Windows:
        """Anchor a login's absolute (wall-clock) expiry to the steady clock: computed once,
        when the login is adopted, so that a wall clock stepped later changes nothing.

        ``advisory`` is ``margin`` before expiry (half the lifetime for tokens that live less
        than twice the margin), moved earlier by ``jitter`` (a fraction of the lifetime, never
        past ``mandatory``); ``mandatory`` is ``mandatory_margin`` before expiry (at most a
        tenth of the lifetime): the allowance for clock skew with the provider."""
        lifetime = expires_at - last_refresh
        if lifetime > 0:
            margin = min(margin, lifetime / 2)
            mandatory_margin = min(mandatory_margin, lifetime / 10)
        expiry = steady_now + (expires_at - wall_now)
        mandatory = expiry - min(mandatory_margin, margin)
        advisory = expiry - margin
        if jitter > 0 and lifetime > 0:
            advisory = max(min(advisory, mandatory) - jitter * lifetime, expiry - lifetime)
            advisory = min(advisory, mandatory)
        return cls(advisory=advisory, mandatory=mandatory, expiry=expiry)


NO_WINDOWS = Windows(-math.inf, -math.inf, -math.inf)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a decision depends on.

    Attributes:
        phase: What is known of the refresh token.
        windows: The adopted login's instants (`NO_WINDOWS` when there is none).
        retry_at: No refresh starts before this instant: the end of a backoff after a
            transient failure, or the refresh-rate floor after any refresh.
        rejected: An API answered 401 to the current access token.
        unsaved: A refreshed login that storage refused is held in memory.
        store_retry_at: When to offer an unsaved login to storage again.
        refreshing: The refresh task runs: from the mandatory instant on, callers join it.
    """

    phase: Phase
    windows: Windows = NO_WINDOWS
    retry_at: float = -math.inf
    rejected: bool = False
    unsaved: bool = False
    store_retry_at: float = -math.inf
    refreshing: bool = False


def _stopped(s: Snapshot) -> bool:
    return s.phase is Phase.DEAD or s.phase is Phase.MISCONFIGURED


def decide(now: float, s: Snapshot) -> Action:
    """What a call at ``now`` does."""
    if s.phase is Phase.EMPTY:
        return Action.WAIT  # the task reads storage
    valid = not s.rejected and now < s.windows.expiry
    store = s.unsaved and now >= s.store_retry_at  # the task offers the unsaved login again
    if s.refreshing and not _stopped(s) and not (valid and now < s.windows.mandatory):
        return Action.WAIT  # a refresh runs: past the mandatory instant, join it
    if _stopped(s) or now < s.retry_at:  # no refresh may start
        if not valid:
            return Action.RECHECK
        return Action.SERVE_AND_REFRESH if store else Action.SERVE
    if not valid:
        return Action.WAIT
    if now < s.windows.advisory:
        return Action.SERVE_AND_REFRESH if store else Action.SERVE
    if now < s.windows.mandatory:
        return Action.SERVE_AND_REFRESH
    return Action.WAIT


def hot_until(s: Snapshot) -> float:
    """The instant before which every call is `Action.SERVE`: the hot path's one comparison
    (``now < hot_until``) needs no other reading."""
    if s.phase is Phase.EMPTY or s.rejected:
        return -math.inf
    if _stopped(s):
        bound = s.windows.expiry
    else:
        bound = max(min(s.retry_at, s.windows.expiry), s.windows.advisory)
        if s.refreshing:
            bound = min(bound, s.windows.mandatory)
    if s.unsaved:
        bound = min(bound, s.store_retry_at)
    return bound


def join_from(s: Snapshot) -> float:
    """The instant from which every call joins the running refresh (`Action.WAIT`) without
    another reading: a refresh runs, nothing stopped refreshes, and the token is past its
    mandatory instant, expired or rejected. ``inf`` when no refresh runs."""
    if not s.refreshing or _stopped(s):
        return math.inf
    if s.phase is Phase.EMPTY or s.rejected:
        return -math.inf
    return min(s.windows.expiry, s.windows.mandatory)


def state_of(now: float, s: Snapshot) -> ManagerState:
    """The state a user sees at ``now``."""
    if s.phase is Phase.EMPTY:
        return ManagerState.EMPTY
    if s.phase is Phase.DEAD:
        return ManagerState.DEAD
    if s.phase is Phase.MISCONFIGURED:
        return ManagerState.MISCONFIGURED
    if s.unsaved:
        return ManagerState.HOLDING_UNSAVED
    if s.phase is Phase.BACKING_OFF and not s.refreshing and now < s.retry_at:
        return ManagerState.BACKING_OFF
    action = decide(now, s)
    if action is Action.WAIT or action is Action.RECHECK:
        return ManagerState.WAITING
    if s.refreshing or action is Action.SERVE_AND_REFRESH:
        return ManagerState.REFRESHING_AHEAD
    return ManagerState.FRESH
