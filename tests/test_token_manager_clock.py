"""Time, for the token manager: expiry anchored to a steady clock when a login is adopted (a
wall clock stepped back never serves an expired token), counted from when the refresh was
sent, and a floor under the refresh rate for tokens that live less than a round trip."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import FakeClock
from tests.support.managers import login, no_watch_manager
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    InMemoryAuthStorage,
    ManagerState,
    RetryPolicy,
    TokenClient,
    TokenEndpointError,
    TokenLifetimeError,
    TokenManager,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.support.managers import FakeTokenEndpoint


async def test_a_wall_clock_stepped_back_never_serves_an_expired_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """NTP steps the wall clock back an hour while the token's hour passes on the steady
    clock: the next call refreshes instead of serving the expired token."""
    steady = FakeClock(1000.0)
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http, steady_clock=steady) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(-3600)  # the step back
        steady.advance(3601)  # the token's real hour
        assert m.state is ManagerState.WAITING
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_after_a_step_back_an_expired_token_is_an_error_not_a_stale_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """The same step back with the token endpoint down: the caller gets the failure."""
    steady = FakeClock(1000.0)
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http, steady_clock=steady) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(-3600)
        steady.advance(3601)
        endpoint.fail = (503, {"error": "temporarily_unavailable"})
        with pytest.raises(TokenEndpointError):
            await m.get_access_token()


async def test_a_suspend_moves_both_clocks_and_refreshes_once(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Two hours of suspend (both clocks move, as CLOCK_BOOTTIME does): one refresh."""
    steady = FakeClock(1000.0)
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http, steady_clock=steady) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(7200)
        steady.advance(7200)
        assert await m.get_access_token() == "AT1"
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_a_wall_clock_stepped_forward_after_adoption_changes_nothing(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Expiry was anchored when the login was adopted: a later wall-clock step forward does
    not make the token look expired (no needless refresh)."""
    steady = FakeClock(1000.0)
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http, steady_clock=steady) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(7200)
        steady.advance(60)
        assert await m.get_access_token() == "AT0"
        assert m.state is ManagerState.FRESH
    assert endpoint.calls == 0


async def test_the_default_steady_clock_is_the_platforms() -> None:
    """Without a custom clock the manager counts on the platform's steady clock; with a
    custom wall clock and no steady clock, on that clock (tests drive one clock)."""
    from vandamme_oauth._times import steady_clock

    clock = FakeClock()
    assert TokenManager(GENERIC, InMemoryAuthStorage())._now is steady_clock
    assert TokenManager(GENERIC, InMemoryAuthStorage(), clock=clock)._now is clock


class RoundTrip:
    """A token endpoint whose answers take ``seconds`` of the fake clock and live
    ``expires_in``."""

    def __init__(self, clock: FakeClock, *, seconds: float, expires_in: float) -> None:
        self.clock, self.seconds, self.expires_in = clock, seconds, expires_in
        self.calls = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.clock.advance(self.seconds)
        n = self.calls
        return httpx.Response(
            200,
            json={
                "access_token": f"AT{n}",
                "refresh_token": f"RT{n}",
                "expires_in": self.expires_in,
            },
        )


async def test_expiry_counts_from_when_the_request_was_sent(clock: FakeClock) -> None:
    """expires_in is added to the instant the refresh was sent, not to when its answer
    arrived 5 s later: the token is never believed to live longer than it does."""
    sent = clock.now
    server = RoundTrip(clock, seconds=5, expires_in=3600)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as http,
        TokenClient(GENERIC, http_client=http, clock=clock) as client,
    ):
        refreshed = await client.refresh(login(clock))
    assert refreshed.expires_at == sent + 3600
    assert refreshed.last_refresh == sent


@contextlib.asynccontextmanager
async def on(server: RoundTrip, storage: InMemoryAuthStorage) -> AsyncIterator[TokenManager]:
    """A manager whose token endpoint is ``server``, trying each refresh once."""
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as http,
        TokenManager(
            GENERIC, storage, clock=server.clock, http_client=http, retry=RetryPolicy(attempts=1)
        ) as manager,
    ):
        yield manager


async def test_a_token_that_expires_in_transit_is_a_typed_error_not_a_hot_loop(
    clock: FakeClock,
) -> None:
    """A provider issuing tokens that live 10 ms, at a 20 ms round trip: the waiter gets
    TokenLifetimeError (never the expired token), later calls get it without a request, and
    refreshes start at most once a second (here: 3 over 3 s of calls every 10 ms)."""
    server = RoundTrip(clock, seconds=0.02, expires_in=0.01)
    storage = InMemoryAuthStorage(login(clock, expires_in=0.01))
    clock.advance(1)
    async with on(server, storage) as m:
        with pytest.raises(TokenLifetimeError) as first:
            await m.get_access_token()
        assert str(first.value) == (
            "the provider issued a token that lived 0.01 s, less than the round trip "
            "(0.02 s): it expired before it could be served. Check the provider's "
            "access-token lifetime"
        )
        outcomes: list[str] = []
        start = clock.now
        while clock.now < start + 3:
            clock.advance(0.01)
            try:
                outcomes.append(await m.get_access_token())
            except TokenLifetimeError as exc:
                outcomes.append(type(exc).__name__)
    assert set(outcomes) == {"TokenLifetimeError"}
    assert server.calls == 4  # the first, then one per second of the three


async def test_a_token_that_expires_the_instant_it_arrives_is_not_served(
    clock: FakeClock,
) -> None:
    """Tokens that live exactly one round trip arrive at their expiry: a token is valid
    strictly before it, so the caller gets TokenLifetimeError, not a token already dead."""
    server = RoundTrip(clock, seconds=0.02, expires_in=0.02)
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    async with on(server, storage) as m:
        with pytest.raises(TokenLifetimeError, match=r"lived 0\.02 s"):
            await m.get_access_token()
    assert server.calls == 1


async def test_every_waiter_of_a_token_expired_in_transit_gets_its_own_error(
    clock: FakeClock,
) -> None:
    """Three callers (one of them ``refresh()``) wait on the refresh whose token expires in
    transit: one request, and each caller raises a TokenLifetimeError object of its own (one
    object raised in many tasks would pile up their tracebacks)."""
    server = RoundTrip(clock, seconds=0.02, expires_in=0.01)
    storage = InMemoryAuthStorage(login(clock, expires_in=0.01))
    clock.advance(1)
    async with on(server, storage) as m:
        outcomes = await asyncio.gather(
            m.get_access_token(), m.get_access_token(), m.refresh(), return_exceptions=True
        )
    assert [type(o) for o in outcomes] == [TokenLifetimeError] * 3
    assert len({id(o) for o in outcomes}) == 3
    assert len({str(o) for o in outcomes}) == 1
    assert server.calls == 1


async def test_a_half_second_token_is_refreshed_at_most_once_a_second(clock: FakeClock) -> None:
    """Tokens that live 0.5 s: served while valid, never past expiry; the floor holds the
    refreshes to one a second; between expiry and the next allowed refresh the caller gets
    TokenLifetimeError saying so."""
    server = RoundTrip(clock, seconds=0.02, expires_in=0.5)
    storage = InMemoryAuthStorage(login(clock, expires_in=0.5))
    clock.advance(1)
    served: list[str] = []
    errors: list[str] = []
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(server.handler)) as http,
        no_watch_manager(storage, clock, http) as m,
    ):
        start = clock.now
        while clock.now < start + 5:
            try:
                token = await m.get_access_token()
            except TokenLifetimeError as exc:
                errors.append(str(exc))
            else:
                auth = await m.get_auth_data()
                assert auth.expires_at is not None
                assert clock.now < auth.expires_at  # never past its expiry
                served.append(token)
            clock.advance(0.05)
    assert server.calls <= 6  # 5 s of calls: one refresh a second at most (and the first)
    assert len(set(served)) == server.calls
    assert errors
    assert errors[0].startswith(
        "the provider's tokens live 0.5 s, and a refresh starts at most once per 1 s "
        "(min_refresh_interval): the next may start in"
    )


async def test_logins_obtained_together_refresh_spread_over_the_jitter_band(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Fifty managers holding logins stored the same second: before expiry - margin - 5 %
    of the lifetime none refreshes, inside that band some do and some do not yet, and at
    expiry - margin all do (the default refresh_jitter, 0.05)."""
    managers = [
        no_watch_manager(InMemoryAuthStorage(login(clock)), clock, http, refresh_jitter=0.05)
        for _ in range(50)
    ]
    start = clock.now
    for m in managers:
        assert await m.get_access_token() == "AT0"
    clock.now = start + 3600 - 300 - 180 - 0.001
    assert {m.state for m in managers} == {ManagerState.FRESH}
    clock.now = start + 3600 - 300 - 90
    assert {m.state for m in managers} == {ManagerState.FRESH, ManagerState.REFRESHING_AHEAD}
    clock.now = start + 3600 - 300
    assert {m.state for m in managers} == {ManagerState.REFRESHING_AHEAD}
    for m in managers:
        await m.aclose()
    assert endpoint.calls == 0
