"""The token manager's decisions, table-tested the way h11 tests its state machine: every
row is (phase and flags, the instant, what a call does, the state reported)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vandamme_oauth._manager_policy import (
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

W = Windows(advisory=100.0, mandatory=180.0, expiry=200.0)
SERVE, REFRESH, WAIT, RECHECK = (
    Action.SERVE,
    Action.SERVE_AND_REFRESH,
    Action.WAIT,
    Action.RECHECK,
)
S = ManagerState

# (name, snapshot, now, action, state)
TABLE: list[tuple[str, Snapshot, float, Action, ManagerState]] = [
    ("nothing loaded", Snapshot(Phase.EMPTY), 0.0, WAIT, S.EMPTY),
    ("before advisory", Snapshot(Phase.ACTIVE, W), 99.9, SERVE, S.FRESH),
    ("at advisory", Snapshot(Phase.ACTIVE, W), 100.0, REFRESH, S.REFRESHING_AHEAD),
    ("just before mandatory", Snapshot(Phase.ACTIVE, W), 179.9, REFRESH, S.REFRESHING_AHEAD),
    ("at mandatory", Snapshot(Phase.ACTIVE, W), 180.0, WAIT, S.WAITING),
    ("at expiry", Snapshot(Phase.ACTIVE, W), 200.0, WAIT, S.WAITING),
    (
        "a refresh runs, before mandatory",
        Snapshot(Phase.ACTIVE, W, refreshing=True),
        150.0,
        REFRESH,
        S.REFRESHING_AHEAD,
    ),
    (
        "a refresh runs (forced) while fresh",
        Snapshot(Phase.ACTIVE, W, refreshing=True),
        50.0,
        SERVE,
        S.REFRESHING_AHEAD,
    ),
    (
        "a refresh runs, past mandatory: join it",
        Snapshot(Phase.ACTIVE, W, refreshing=True),
        190.0,
        WAIT,
        S.WAITING,
    ),
    (
        "rejected by an API while fresh",
        Snapshot(Phase.ACTIVE, W, rejected=True),
        50.0,
        WAIT,
        S.WAITING,
    ),
    (
        "backing off, valid, past mandatory: served",
        Snapshot(Phase.BACKING_OFF, W, retry_at=195.0),
        190.0,
        SERVE,
        S.BACKING_OFF,
    ),
    (
        "backing off, expired: recheck, no request",
        Snapshot(Phase.BACKING_OFF, W, retry_at=250.0),
        210.0,
        RECHECK,
        S.BACKING_OFF,
    ),
    (
        "backoff over, inside the margin",
        Snapshot(Phase.BACKING_OFF, W, retry_at=150.0),
        150.0,
        REFRESH,
        S.REFRESHING_AHEAD,
    ),
    (
        "backoff over, expired",
        Snapshot(Phase.BACKING_OFF, W, retry_at=150.0),
        205.0,
        WAIT,
        S.WAITING,
    ),
    (
        "rate floor, valid, inside the margin",
        Snapshot(Phase.ACTIVE, W, retry_at=160.0),
        150.0,
        SERVE,
        S.FRESH,
    ),
    (
        "rate floor, expired",
        Snapshot(Phase.ACTIVE, W, retry_at=260.0),
        250.0,
        RECHECK,
        S.WAITING,
    ),
    ("dead, valid, past mandatory", Snapshot(Phase.DEAD, W), 190.0, SERVE, S.DEAD),
    ("dead, expired", Snapshot(Phase.DEAD, W), 200.0, RECHECK, S.DEAD),
    ("misconfigured, valid", Snapshot(Phase.MISCONFIGURED, W), 150.0, SERVE, S.MISCONFIGURED),
    ("misconfigured, expired", Snapshot(Phase.MISCONFIGURED, W), 201.0, RECHECK, S.MISCONFIGURED),
    (
        "misconfigured with a refresh running (forced): never a wait",
        Snapshot(Phase.MISCONFIGURED, W, refreshing=True),
        190.0,
        SERVE,
        S.MISCONFIGURED,
    ),
    (
        "unsaved, not yet time to store",
        Snapshot(Phase.ACTIVE, W, unsaved=True, store_retry_at=60.0),
        50.0,
        SERVE,
        S.HOLDING_UNSAVED,
    ),
    (
        "unsaved, time to store again",
        Snapshot(Phase.ACTIVE, W, unsaved=True, store_retry_at=60.0),
        60.0,
        REFRESH,
        S.HOLDING_UNSAVED,
    ),
    (
        "unsaved while backing off: still offered to storage",
        Snapshot(Phase.BACKING_OFF, W, retry_at=190.0, unsaved=True, store_retry_at=60.0),
        70.0,
        REFRESH,
        S.HOLDING_UNSAVED,
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "now", "action", "state"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_the_decision_table(
    snapshot: Snapshot, now: float, action: Action, state: ManagerState
) -> None:
    """Each row's call does what the row says, and the state says the same."""
    assert decide(now, snapshot) is action
    assert state_of(now, snapshot) is state


@pytest.mark.parametrize(
    ("snapshot", "bound"),
    [
        (Snapshot(Phase.EMPTY), -math.inf),
        (Snapshot(Phase.ACTIVE, W), 100.0),
        (Snapshot(Phase.ACTIVE, W, rejected=True), -math.inf),
        (Snapshot(Phase.ACTIVE, W, refreshing=True), 100.0),
        (Snapshot(Phase.BACKING_OFF, W, retry_at=190.0), 190.0),
        (Snapshot(Phase.BACKING_OFF, W, retry_at=250.0), 200.0),
        (Snapshot(Phase.BACKING_OFF, W, retry_at=50.0), 100.0),
        (Snapshot(Phase.BACKING_OFF, W, retry_at=190.0, refreshing=True), 180.0),
        (Snapshot(Phase.DEAD, W), 200.0),
        (Snapshot(Phase.MISCONFIGURED, W, refreshing=True), 200.0),
        (Snapshot(Phase.ACTIVE, W, unsaved=True, store_retry_at=60.0), 60.0),
    ],
)
def test_the_hot_paths_bound(snapshot: Snapshot, bound: float) -> None:
    """The one float the hot path compares with, for each kind of snapshot."""
    assert hot_until(snapshot) == bound


instants = st.floats(min_value=0, max_value=400, allow_nan=False)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    advisory, mandatory, expiry = sorted(draw(st.lists(instants, min_size=3, max_size=3)))
    phase = draw(st.sampled_from(Phase))
    return Snapshot(
        phase,
        NO_WINDOWS if phase is Phase.EMPTY else Windows(advisory, mandatory, expiry),
        retry_at=draw(st.one_of(st.just(-math.inf), instants)),
        rejected=draw(st.booleans()),
        unsaved=draw(st.booleans()),
        store_retry_at=draw(instants),
        refreshing=draw(st.booleans()),
    )


@given(snapshots(), instants)
def test_the_hot_path_never_serves_what_the_decision_would_not(s: Snapshot, now: float) -> None:
    """Before hot_until every call is a plain SERVE: the hot path's single comparison agrees
    with the whole decision."""
    if now < hot_until(s):
        assert decide(now, s) is Action.SERVE


@given(snapshots(), instants)
def test_a_call_joins_the_refresh_from_join_from_on_and_only_then(s: Snapshot, now: float) -> None:
    """From join_from on, the decision is WAIT (the slow path skips it); before, whatever
    decide says stands, and while a refresh runs a WAIT comes only from join_from."""
    if now >= join_from(s):
        assert decide(now, s) is Action.WAIT
    elif s.refreshing and s.phase not in (Phase.DEAD, Phase.MISCONFIGURED):
        assert decide(now, s) is not Action.WAIT


def test_join_from_by_example() -> None:
    """A refresh runs: from the mandatory instant (or expiry, if sooner); at once for a
    rejected token or an empty manager; never while stopped or when no refresh runs."""
    running = Snapshot(Phase.ACTIVE, W, refreshing=True)
    assert join_from(running) == 180.0
    assert join_from(dataclasses.replace(running, windows=Windows(100.0, 250.0, 200.0))) == 200.0
    assert join_from(dataclasses.replace(running, rejected=True)) == -math.inf
    assert join_from(dataclasses.replace(running, phase=Phase.EMPTY)) == -math.inf
    assert join_from(dataclasses.replace(running, phase=Phase.DEAD)) == math.inf
    assert join_from(dataclasses.replace(running, phase=Phase.MISCONFIGURED)) == math.inf
    assert join_from(dataclasses.replace(running, refreshing=False)) == math.inf


@given(snapshots(), instants)
def test_an_expired_or_rejected_token_is_never_served(s: Snapshot, now: float) -> None:
    """Whatever the phase, a token past its expiry (or rejected by an API) is never served."""
    if s.rejected or now >= s.windows.expiry:
        assert decide(now, s) not in (Action.SERVE, Action.SERVE_AND_REFRESH)


@given(snapshots(), instants)
def test_no_refresh_starts_while_stopped(s: Snapshot, now: float) -> None:
    """Dead, misconfigured, backing off or under the rate floor: no call starts a refresh
    request (it serves, or rechecks storage; an unsaved login is still offered to it)."""
    stopped = s.phase in (Phase.DEAD, Phase.MISCONFIGURED) or now < s.retry_at
    if stopped and not s.unsaved and s.phase is not Phase.EMPTY:
        refreshing_wait = s.refreshing and s.phase not in (Phase.DEAD, Phase.MISCONFIGURED)
        assert decide(now, s) in (
            (Action.SERVE, Action.RECHECK, Action.WAIT)
            if refreshing_wait
            else (Action.SERVE, Action.RECHECK)
        )


def test_windows_are_anchored_on_the_steady_clock() -> None:
    """A login adopted when the wall clock reads 1000 and the steady clock 5: expiry 3600 s
    later on the steady clock, whatever the wall clock does afterwards."""
    w = Windows.of(
        expires_at=4600.0,
        last_refresh=1000.0,
        wall_now=1000.0,
        steady_now=5.0,
        margin=300.0,
        mandatory_margin=20.0,
    )
    assert w == Windows(advisory=3305.0, mandatory=3585.0, expiry=3605.0)
    short = Windows.of(
        expires_at=1010.0,
        last_refresh=1000.0,
        wall_now=1002.0,
        steady_now=0.0,
        margin=300.0,
        mandatory_margin=20.0,
    )
    assert short == Windows(advisory=3.0, mandatory=7.0, expiry=8.0)


def test_jitter_moves_the_advisory_instant_earlier_never_past_mandatory() -> None:
    """A jitter of 5 % of a 3600 s lifetime moves advisory 180 s earlier; never before the
    login's start, never after mandatory."""
    common = {"last_refresh": 0.0, "wall_now": 0.0, "steady_now": 0.0, "mandatory_margin": 20.0}
    w = Windows.of(expires_at=3600.0, margin=300.0, jitter=0.05, **common)
    assert w == Windows(advisory=3120.0, mandatory=3580.0, expiry=3600.0)
    huge = Windows.of(expires_at=3600.0, margin=300.0, jitter=5.0, **common)
    assert huge.advisory == 0.0


def test_a_login_with_no_lifetime_keeps_the_configured_margins() -> None:
    """expires_at equal to last_refresh (or before it): the margins are not shrunk to
    nothing, so such a login is due at once, and no jitter applies."""
    for expires_at in (1000.0, 990.0):
        w = Windows.of(
            expires_at=expires_at,
            last_refresh=1000.0,
            wall_now=1000.0,
            steady_now=0.0,
            margin=300.0,
            mandatory_margin=20.0,
            jitter=0.5,
        )
        expiry = expires_at - 1000.0
        assert w == Windows(advisory=expiry - 300, mandatory=expiry - 20, expiry=expiry)


def test_jitter_applies_to_short_lifetimes_too() -> None:
    """A token of half a second still gets its jitter (a fraction of its lifetime)."""
    w = Windows.of(
        expires_at=0.5,
        last_refresh=0.0,
        wall_now=0.0,
        steady_now=0.0,
        margin=300.0,
        mandatory_margin=20.0,
        jitter=0.1,
    )
    assert w.expiry == 0.5
    assert w.mandatory == pytest.approx(0.45)
    assert w.advisory == pytest.approx(0.2)
