"""TokenManager with an in-process token endpoint (httpx.MockTransport) gated by an Event."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.managers import (
    FakeTokenEndpoint,
    PlainStorage,
    answer_with_expires_in,
    assert_rotated_once,
    login,
    manager,
    no_watch_manager,
    settled,
    state,
    stored_refresh_token,
    until_seen,
    watch_adoptions,
)
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    InMemoryAuthStorage,
    ManagerState,
    NetworkError,
    NotAuthenticatedError,
    OAuthError,
    ReauthenticationRequired,
    RetryPolicy,
    StorageError,
    TokenEndpointError,
    TokenError,
    TokenManager,
)
from vandamme_oauth._times import MAX_LIFETIME
from vandamme_oauth._token_manager import _poll

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from tests.conftest import FakeClock


async def test_valid_token_is_served_without_any_request(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A token valid beyond the margin is returned as stored, with no refresh."""
    storage = InMemoryAuthStorage(login(clock))
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(3600 - 301)
        assert await m.get_access_token() == "AT0"
    assert endpoint.calls == 0


async def test_twenty_callers_at_expiry_share_one_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """20 callers past the mandatory instant wait for one gated refresh and all get its
    token."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 10)  # inside the 20 s mandatory window
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        tasks = [asyncio.create_task(m.get_access_token()) for _ in range(20)]
        await endpoint.arrived.wait()
        assert not any(t.done() for t in tasks)
        assert state(m) is ManagerState.WAITING
        endpoint.gate.set()
        tokens = await asyncio.gather(*tasks)
    assert tokens == ["AT1"] * 20
    assert endpoint.calls == 1
    stored = await storage.read_auth()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT1", "RT1")


async def test_permanent_failure_reaches_every_waiter_with_one_request(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """invalid_grant fails all 20 waiters and later callers without a second request, and
    the stored login is left as it was."""
    original = login(clock)
    storage = InMemoryAuthStorage(original)
    clock.advance(3601)
    endpoint.fail = (400, {"error": "invalid_grant"})
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        tasks = [asyncio.create_task(m.get_access_token()) for _ in range(20)]
        await endpoint.arrived.wait()
        endpoint.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(ReauthenticationRequired):
            await m.get_access_token()
    assert all(isinstance(r, ReauthenticationRequired) for r in results)
    assert endpoint.calls == 1
    assert await storage.read_auth() == original


async def test_rejected_token_adopts_a_newer_stored_login(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """If another process stored a new login while our refresh was refused, we adopt it."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.fail = (400, {"error": "invalid_grant"})
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        task = asyncio.create_task(m.get_access_token())
        await endpoint.arrived.wait()
        newer = AuthData(
            access_token="OTHER",
            refresh_token="RT-other",
            expires_at=clock.now + 3600,
            last_refresh=clock.now,
        )
        await storage.write_auth(newer)
        endpoint.gate.set()
        assert await task == "OTHER"


async def test_transient_failure_serves_the_still_valid_token_then_backs_off(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A 503 inside the margin keeps serving the valid token and waits before trying again."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 100)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert endpoint.calls == 1
        assert state(m) is ManagerState.BACKING_OFF
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.BACKING_OFF  # no second request yet
        clock.advance(5)
        endpoint.fail = None
        assert await m.get_access_token() == "AT0"  # refreshing ahead: served at once
        await settled(m)
        assert await m.get_access_token() == "AT2"
    assert endpoint.calls == 2


async def test_expired_token_is_never_returned(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """When the token has expired and the refresh fails transiently, the error is raised."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with manager(storage, clock, http) as m:
        with pytest.raises(TokenEndpointError) as first:
            await m.get_access_token()
        with pytest.raises(TokenEndpointError):
            await m.get_access_token()  # during the backoff: same error, no request
    assert first.value.transient
    assert endpoint.calls == 1


async def test_adopts_a_token_refreshed_by_another_process(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Inside the margin the background task re-reads storage and adopts a fresh token
    without refreshing."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(3500)
        await storage.write_auth(login(clock, token="FROM-ELSEWHERE"))
        assert await m.get_access_token() == "AT0"  # still valid: served at once
        await settled(m)
        assert await m.get_access_token() == "FROM-ELSEWHERE"
    assert endpoint.calls == 0


async def test_not_authenticated(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """Empty storage raises NotAuthenticatedError telling the user to log in."""
    async with manager(InMemoryAuthStorage(), clock, http) as m:
        with pytest.raises(NotAuthenticatedError, match="login"):
            await m.get_access_token()


async def test_unknown_expiry_uses_the_fallback_lifetime(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Without any expiry the token is trusted for fallback_lifetime after last_refresh."""
    storage = InMemoryAuthStorage(
        AuthData(access_token="AT0", refresh_token="RT0", last_refresh=clock.now)
    )
    async with manager(storage, clock, http) as m:
        clock.advance(GENERIC.fallback_lifetime - 301)
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.FRESH
        clock.advance(2)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert await m.get_access_token() == "AT1"


async def test_short_lived_tokens_use_half_their_life_as_margin(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A 60 s token with a 300 s margin is not refreshed on every call."""
    storage = InMemoryAuthStorage(login(clock, expires_in=60))
    async with manager(storage, clock, http) as m:
        clock.advance(29)
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.FRESH
        clock.advance(2)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert await m.get_access_token() == "AT1"
        clock.advance(29)
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_get_auth_data_and_forced_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """get_auth_data returns the login; refresh() forces one refresh now."""
    storage = InMemoryAuthStorage(login(clock))
    async with manager(storage, clock, http) as m:
        assert (await m.get_auth_data()).refresh_token == "RT0"
        refreshed = await m.refresh()
        assert refreshed.access_token == "AT1"
        assert await m.get_access_token() == "AT1"
        assert "RT" not in repr(m)
    body = json.dumps(refreshed.to_dict())
    assert "RT1" in body


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(200, text="<html>login</html>"), TokenError),
        (httpx.Response(200, text="{not json"), TokenError),
        (httpx.Response(200, json={"token_type": "Bearer"}), TokenError),
        (httpx.Response(500, text="<html>oops</html>"), TokenEndpointError),
        (
            httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "30"}),
            TokenEndpointError,
        ),
    ],
)
async def test_bad_answers_raise_typed_errors_and_lose_nothing(
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    answer: httpx.Response,
    error: type[Exception],
) -> None:
    """HTML, invalid JSON, no access_token, 500 and 429 each raise a typed error; the stored
    login (and its refresh token) is left exactly as it was."""
    original = login(clock)
    storage = InMemoryAuthStorage(original)
    clock.advance(3601)
    endpoint.answer = answer
    async with manager(storage, clock, http) as m:
        with pytest.raises(error):
            await m.get_access_token()
    assert await storage.read_auth() == original


class FlakyStorage(InMemoryAuthStorage):
    """In-memory storage whose reads or writes can be made to fail like a lost Redis."""

    def __init__(self, initial: AuthData) -> None:
        super().__init__(initial)
        self.fail_reads = False
        self.fail_writes = False
        self.reads = self.write_attempts = self.writes = 0  # writes: the successful ones

    async def read_auth(self) -> AuthData | None:
        self.reads += 1
        if self.fail_reads:
            raise StorageError("storage unreachable")
        return await super().read_auth()

    async def write_auth(self, data: AuthData) -> None:
        self.write_attempts += 1
        if self.fail_writes:
            raise StorageError("storage unreachable")
        await super().write_auth(data)
        self.writes += 1


async def test_storage_outage_serves_a_valid_cached_token_but_never_an_expired_one(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Inside the margin a read failure keeps the cached token, up to (not at) the instant
    it expires; from then on it raises."""
    storage = FlakyStorage(login(clock))
    expires_at = clock.now + 3600
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        storage.fail_reads = True
        clock.advance(3600 - 100)
        assert await m.get_access_token() == "AT0"
        clock.now = expires_at - 0.001
        assert await m.get_access_token() == "AT0"
        clock.now = expires_at
        with pytest.raises(StorageError):
            await m.get_access_token()
    assert endpoint.calls == 0


async def test_refreshed_login_that_cannot_be_stored_is_kept_and_stored_later(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """The rotated refresh token is never lost: served from memory, written when possible."""
    storage = FlakyStorage(login(clock))
    clock.advance(3601)
    storage.fail_writes = True
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        assert (await InMemoryAuthStorage.read_auth(storage)) == login(
            clock.__class__(clock.now - 3601)
        )
        storage.fail_writes = False
        clock.advance(2)
        assert await m.get_access_token() == "AT1"
        await settled(m)
        assert storage.writes == 1  # stored, and no longer held: not written again
        clock.advance(2)
        assert await m.get_access_token() == "AT1"
    assert storage.writes == 1
    stored = await storage.read_auth()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT1", "RT1")
    assert endpoint.calls == 1


# -- refreshes belong to the manager --------------------------------------------------------


async def test_callers_inside_the_advisory_window_never_wait(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Inside the refresh margin every call returns the current token at once while ONE
    refresh runs in the background; the new token is served once it is stored."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 200)
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        tokens = [await m.get_access_token() for _ in range(50)]
        await endpoint.arrived.wait()
        assert state(m) is ManagerState.REFRESHING_AHEAD
        tokens += [await m.get_access_token() for _ in range(50)]
        assert tokens == ["AT0"] * 100
        endpoint.gate.set()
        await settled(m)
        assert await m.get_access_token() == "AT1"
        assert state(m) is ManagerState.FRESH
    assert endpoint.calls == 1


async def test_hung_endpoint_serves_the_valid_token_until_expiry_then_a_typed_error(
    clock: FakeClock, endpoint: FakeTokenEndpoint
) -> None:
    """A token endpoint that never answers delays no caller before the mandatory window; after
    expiry callers wait for the refresh and get a typed NetworkError when it times out."""
    release = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        endpoint.calls += 1
        endpoint.arrived.set()
        await release.wait()
        raise httpx.ReadTimeout("timed out", request=request)

    storage = InMemoryAuthStorage(login(clock))
    async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as http:
        m = manager(storage, clock, http)
        async with m:
            clock.advance(3600 - 250)
            for _ in range(23):  # 230 s of calls, up to the 20 s mandatory window
                assert await m.get_access_token() == "AT0"
                clock.advance(10)
            await endpoint.arrived.wait()
            clock.advance(21)  # expired now
            waiter = asyncio.create_task(m.get_access_token())
            assert state(m) is ManagerState.WAITING
            release.set()
            with pytest.raises(NetworkError):
                await waiter
    assert endpoint.calls == 1


async def test_cancelled_callers_do_not_lose_the_rotated_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Every caller waiting at expiry is cancelled while the refresh is at the server; the
    answer is still stored, and the next call is served without another request."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        callers = [asyncio.create_task(m.get_access_token()) for _ in range(10)]
        await endpoint.arrived.wait()
        for caller in callers:
            caller.cancel()
        await asyncio.wait(callers)
        assert all(c.cancelled() for c in callers)
        endpoint.gate.set()
        await settled(m)
        assert await m.get_access_token() == "AT1"
    await assert_rotated_once(storage, endpoint)


async def test_caller_timeout_does_not_cancel_the_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """asyncio.timeout around a call that waits for the refresh ends the call only."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await m.get_access_token()
        assert endpoint.calls == 1
        endpoint.gate.set()
        await settled(m)
    assert (await storage.read_auth()) == (await storage.read_auth())
    assert await stored_refresh_token(storage) == "RT1"


async def test_aclose_waits_for_the_refresh_in_flight_to_be_stored(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Leaving ``async with`` while a refresh is at the server stores its answer first."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 200)
    endpoint.gate.clear()
    m = manager(storage, clock, http)
    assert await m.get_access_token() == "AT0"  # starts the refresh ahead
    await endpoint.arrived.wait()
    watcher = m._watcher
    assert watcher is not None
    closing = asyncio.create_task(m.aclose())
    endpoint.gate.set()
    await closing
    assert await stored_refresh_token(storage) == "RT1"
    assert m._task is None
    assert watcher.done()  # no task of the manager outlives aclose()


async def test_aclose_gives_up_on_a_hung_refresh_after_close_timeout(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A refresh that never answers does not hold aclose() past close_timeout, and leaves
    no task behind; the stored login is unchanged."""
    original = login(clock)
    storage = InMemoryAuthStorage(original)
    clock.advance(3600 - 200)
    endpoint.gate.clear()
    m = manager(storage, clock, http, close_timeout=0.01)
    assert await m.get_access_token() == "AT0"
    await endpoint.arrived.wait()
    refresh = m._task
    assert refresh is not None
    await m.aclose()
    assert m._task is None
    assert refresh.cancelled()
    assert await storage.read_auth() == original
    endpoint.gate.set()


async def test_closed_manager_refuses_new_work(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """After aclose() a call that needs storage or the network raises a typed error."""
    storage = InMemoryAuthStorage(login(clock))
    m = manager(storage, clock, http)
    await m.aclose()
    await m.aclose()  # idempotent
    with pytest.raises(OAuthError) as caught:
        await m.get_access_token()
    assert str(caught.value) == "this TokenManager is closed"


async def test_backoff_is_measured_from_the_end_of_a_slow_failure(
    clock: FakeClock, endpoint: FakeTokenEndpoint
) -> None:
    """A failure that took 30 s still backs off afterwards: the next call, right after it,
    sends no request."""

    async def slow_failure(request: httpx.Request) -> httpx.Response:
        endpoint.calls += 1
        clock.advance(30)  # the request took 30 s (by the manager's clock)
        return httpx.Response(503, json={"error": "temporarily_unavailable"})

    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 290)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(slow_failure)) as http,
        manager(storage, clock, http) as m,
    ):
        assert await m.get_access_token() == "AT0"
        await settled(m)
        clock.advance(0.5)
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.BACKING_OFF
        await settled(m)
    assert endpoint.calls == 1


async def test_retry_after_is_honoured_up_to_max_backoff(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A 429 with Retry-After: 120 and max_backoff=60: no request before 60 s, one after."""
    endpoint.answer = httpx.Response(
        429, json={"error": "slow_down"}, headers={"Retry-After": "120"}
    )
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 290)
    async with manager(storage, clock, http, max_backoff=60) as m:
        assert await m.get_access_token() == "AT0"
        await settled(m)
        clock.advance(59)
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.BACKING_OFF
        assert endpoint.calls == 1
        clock.advance(2)
        endpoint.answer = None
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert await m.get_access_token() == "AT2"
    assert endpoint.calls == 2


async def test_dead_refresh_token_serves_the_valid_token_then_raises(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """invalid_grant during a refresh ahead: the valid token is served until it expires,
    then ReauthenticationRequired, with no further request."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 200)
    endpoint.fail = (400, {"error": "invalid_grant"})
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert state(m) is ManagerState.DEAD
        clock.advance(150)
        assert await m.get_access_token() == "AT0"
        clock.advance(51)
        for _ in range(3):
            with pytest.raises(ReauthenticationRequired):
                await m.get_access_token()
    assert endpoint.calls == 1


class ExplodingStorage(InMemoryAuthStorage):
    """Writes raise whatever ``error`` is (not only StorageError)."""

    def __init__(self, initial: AuthData) -> None:
        super().__init__(initial)
        self.error: BaseException | None = None

    async def write_auth(self, data: AuthData) -> None:
        if self.error is not None:
            raise self.error
        await super().write_auth(data)


async def test_any_write_failure_keeps_the_rotated_token_in_memory(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A write that raises an unexpected exception (here RuntimeError) after a successful
    refresh: the new login is served and written once storage works again."""
    storage = ExplodingStorage(login(clock))
    storage.error = RuntimeError("disk on fire")
    clock.advance(3601)
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        storage.error = None
        clock.advance(2)
        assert await m.get_access_token() == "AT1"
        await settled(m)
    await assert_rotated_once(storage, endpoint)


async def test_aclose_stores_a_login_held_in_memory(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A refreshed login that storage refused is written by aclose() if storage is back."""
    storage = ExplodingStorage(login(clock))
    storage.error = StorageError("unreachable")
    clock.advance(3601)
    m = manager(storage, clock, http)
    assert await m.get_access_token() == "AT1"
    storage.error = None
    await m.aclose()
    assert await stored_refresh_token(storage) == "RT1"


@pytest.mark.parametrize(
    "expires_in",
    ["1e400", "NaN", "-Infinity", "-5", "0", "true", '"soon"', "[]", "9" * 400 + ".5"],
)
async def test_absurd_expires_in_is_typed_and_the_rotated_token_kept(
    clock: FakeClock, endpoint: FakeTokenEndpoint, expires_in: str
) -> None:
    """A 200 answer with a new refresh token and an unusable expires_in: a typed TokenError
    reaches the callers once the old token expired, and the new refresh token is stored."""

    absurd = answer_with_expires_in(endpoint, expires_in)

    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(absurd)) as http,
        manager(storage, clock, http) as m,
    ):
        with pytest.raises(TokenError, match="expires_in"):
            await m.get_access_token()
    assert await storage.read_auth() == login(clock.__class__(clock.now - 3601)).replace(
        refresh_token="RT1"
    )
    assert endpoint.calls == 1


@pytest.mark.parametrize("expires_in", ["1e12", "9" * 400])
async def test_huge_expires_in_is_clamped_to_ten_years(
    clock: FakeClock, endpoint: FakeTokenEndpoint, expires_in: str
) -> None:
    """A huge but finite expires_in is clamped (MAX_LIFETIME), stored and served."""

    huge = answer_with_expires_in(endpoint, expires_in)

    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(huge)) as http,
        manager(storage, clock, http) as m,
    ):
        assert await m.get_access_token() == "AT1"
        assert await m.get_access_token() == "AT1"
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.expires_at == clock.now + MAX_LIFETIME
    assert endpoint.calls == 1


async def test_a_new_login_written_elsewhere_is_adopted_by_the_watcher(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Another writer stores a login for another account: the running manager serves it
    (through the watcher, not a refresh); a logout then turns into NotAuthenticatedError."""
    storage = InMemoryAuthStorage(login(clock))
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        adopted = watch_adoptions(m)
        other = AuthData(
            access_token="BOB",
            refresh_token="RT-bob",
            account_id="bob",
            expires_at=clock.now + 3600,
            last_refresh=clock.now,
        )
        await until_seen(adopted, lambda: m._token == "BOB", lambda: storage.write_auth(other))
        assert await m.get_access_token() == "BOB"
        await until_seen(adopted, lambda: m._auth is None, storage.clear_auth)
        with pytest.raises(NotAuthenticatedError):
            await m.get_access_token()
    assert endpoint.calls == 0


async def test_polling_watcher_for_backends_that_cannot_notify(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """A storage without changes() is polled with read_auth(); its new login is adopted."""

    storage = PlainStorage(login(clock))
    async with manager(storage, clock, http, watch_interval=0.01) as m:
        assert await m.get_access_token() == "AT0"
        adopted = watch_adoptions(m)
        new = login(clock, token="NEW")
        await until_seen(adopted, lambda: m._token == "NEW", lambda: storage.write_auth(new))
        assert await m.get_access_token() == "NEW"


async def test_ten_thousand_callers_at_expiry_one_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A storm of 10,000 callers at expiry: exactly one refresh, every caller served."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    async with manager(storage, clock, http) as m:
        tokens = await asyncio.gather(*(m.get_access_token() for _ in range(10_000)))
    assert set(tokens) == {"AT1"}
    assert endpoint.calls == 1


async def test_first_call_serves_a_stored_token_in_the_margin_without_waiting(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A manager that starts inside the margin loads the stored token and serves it; the
    refresh runs behind."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 200)
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await endpoint.arrived.wait()
        assert state(m) is ManagerState.REFRESHING_AHEAD
        endpoint.gate.set()
        await settled(m)
        assert await m.get_access_token() == "AT1"


class CountingStorage(InMemoryAuthStorage):
    """Counts reads and lock() entries: the hot path must do neither."""

    def __init__(self, initial: AuthData) -> None:
        super().__init__(initial)
        self.reads = 0
        self.locks = 0

    async def read_auth(self) -> AuthData | None:
        self.reads += 1
        return await super().read_auth()

    def lock(self) -> contextlib._AsyncGeneratorContextManager[None]:
        self.locks += 1
        return super().lock()


async def test_the_hot_path_takes_no_lock_and_reads_no_storage(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """After the first call loaded the login, 10,000 calls on a valid token cost no storage
    read, no lock and no suspension (each call completes without yielding to the loop)."""
    storage = CountingStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        reads, locks = storage.reads, storage.locks
        for _ in range(10_000):
            call = m.get_access_token()
            with pytest.raises(StopIteration) as done:
                call.send(None)  # a coroutine that never suspends finishes on the first send
            assert done.value.value == "AT0"
        assert (storage.reads, storage.locks) == (reads, locks)
    assert endpoint.calls == 0


# -- the numbers the documentation promises ---------------------------------------------------


def test_documented_defaults(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """refresh_margin 300 s, mandatory_margin 20 s, max_backoff 60 s, a watcher every
    0.5 s, close_timeout 10 s (README, class docstring)."""
    m = TokenManager(GENERIC, InMemoryAuthStorage(), http_client=http)
    assert (
        m.refresh_margin,
        m.mandatory_margin,
        m.max_backoff,
        m.watch_interval,
        m.close_timeout,
    ) == (300.0, 20.0, 60.0, 0.5, 10.0)
    assert m.state is ManagerState.EMPTY


async def test_the_windows_start_exactly_where_documented(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """One second before expiry - margin: fresh. At expiry - margin: refreshing ahead. At
    expiry - mandatory_margin: callers wait. The instants are inclusive."""
    storage = InMemoryAuthStorage(login(clock))
    start = clock.now
    endpoint.gate.clear()
    async with no_watch_manager(storage, clock, http) as m:
        clock.now = start + 3600 - 300 - 0.001
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.FRESH
        clock.now = start + 3600 - 300
        assert await m.get_access_token() == "AT0"
        assert m._task is not None  # this very call started the refresh ahead
        assert state(m) is ManagerState.REFRESHING_AHEAD
        clock.now = start + 3600 - 20 - 0.001
        assert state(m) is ManagerState.REFRESHING_AHEAD
        clock.now = start + 3600 - 20
        assert state(m) is ManagerState.WAITING
        waiter = asyncio.create_task(m.get_access_token())
        await endpoint.arrived.wait()
        endpoint.gate.set()
        assert await waiter == "AT1"
    assert endpoint.calls == 1


async def test_backoff_doubles_from_one_second_and_resets_with_a_new_refresh_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Transient failures back off 1 s, 2 s, 4 s (each counted from the failure); the
    next attempt comes exactly then; a new login forgets the failures."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 250)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with no_watch_manager(storage, clock, http) as m:
        for attempt, delay in enumerate((1.0, 2.0, 4.0), start=1):
            assert await m.get_access_token() == "AT0"
            await settled(m)
            assert endpoint.calls == attempt
            clock.advance(delay - 0.001)
            assert await m.get_access_token() == "AT0"
            await settled(m)
            assert endpoint.calls == attempt  # still backing off
            clock.advance(0.001)
        await storage.write_auth(login(clock, token="NEW").replace(refresh_token="RT-new"))
        clock.advance(3600 - 250)
        assert await m.get_access_token() == "NEW"  # adopted: earlier failures forgotten
        await settled(m)
        calls = endpoint.calls
        clock.advance(1.0)
        assert await m.get_access_token() == "NEW"
        await settled(m)
        assert endpoint.calls == calls + 1  # one second again, not eight


async def test_async_with_prepares_the_storage(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """Entering the manager awaits the storage's optional prepare()."""

    class Preparing(InMemoryAuthStorage):
        prepared = False

        async def prepare(self) -> None:
            self.prepared = True

    storage = Preparing(login(clock))
    async with no_watch_manager(storage, clock, http):
        assert storage.prepared


async def test_a_failed_refresh_is_logged_once_with_the_next_attempt(
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One WARNING per failed attempt, naming the error and when the next one comes."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 250)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    caplog.set_level(logging.WARNING, logger="vandamme_oauth._token_manager")
    async with no_watch_manager(storage, clock, http) as m:
        await m.get_access_token()
        await settled(m)
    lines = [r.getMessage() for r in caplog.records if r.name == "vandamme_oauth._token_manager"]
    assert lines == [
        "refresh failed (the token endpoint answered HTTP 503 to the refresh_token request "
        "with temporarily_unavailable); next attempt in 1 s"
    ]


async def test_a_waiter_told_when_aclose_abandons_a_hung_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A caller waiting at expiry while aclose() gives up on a hung refresh gets a typed
    error saying so, not a bare CancelledError."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.gate.clear()
    m = manager(storage, clock, http, close_timeout=0.01)
    waiter = asyncio.create_task(m.get_access_token())
    await endpoint.arrived.wait()
    await m.aclose()
    with pytest.raises(OAuthError) as caught:
        await waiter
    assert str(caught.value) == "the refresh was abandoned because the TokenManager closed"
    endpoint.gate.set()


async def test_a_held_login_never_overwrites_a_newer_one_stored_meanwhile(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Our refreshed login could not be stored; meanwhile someone stored another login.
    When storage works again we adopt theirs instead of overwriting it with ours."""
    storage = ExplodingStorage(login(clock))
    storage.error = StorageError("unreachable")
    clock.advance(3601)
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"  # held in memory
        other = login(clock, token="OTHER").replace(refresh_token="RT-other")
        await InMemoryAuthStorage.write_auth(storage, other)  # another process, storage back
        storage.error = None
        clock.advance(2)
        await m.get_access_token()
        await settled(m)
        assert await m.get_access_token() == "OTHER"
    assert await storage.read_auth() == other


async def test_aclose_says_once_that_a_held_login_could_not_be_stored(
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If storage still refuses at close, aclose() does not raise; it logs one ERROR, and
    the write failure's own text (which may hold anything) is not logged, only its type."""
    storage = ExplodingStorage(login(clock))
    storage.error = RuntimeError("disk said RT1 is bad")
    clock.advance(3601)
    caplog.set_level(logging.ERROR, logger="vandamme_oauth._token_manager")
    m = manager(storage, clock, http)
    assert await m.get_access_token() == "AT1"
    await m.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "vandamme_oauth._token_manager"]
    assert lines == [
        "the refreshed login could not be stored (RuntimeError); holding it in memory",
        "closing with a refreshed login that storage would not take",
    ]


async def test_get_auth_data_has_the_same_hot_path(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """get_auth_data() on a valid login returns the cached login without suspending, reading
    storage or locking; before the first load it reads storage (not a cached None)."""
    storage = CountingStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        first = await m.get_auth_data()
        assert first.access_token == "AT0"
        reads, locks = storage.reads, storage.locks
        call = m.get_auth_data()
        with pytest.raises(StopIteration) as done:
            call.send(None)
        assert done.value.value is first
        assert (storage.reads, storage.locks) == (reads, locks)
        clock.now = first.expires_at - 300  # the advisory window: a refresh, still served
        assert (await m.get_auth_data()).access_token == "AT0"
        await settled(m)
        assert (await m.get_auth_data()).access_token == "AT1"
    assert endpoint.calls == 1


async def test_only_the_current_token_can_be_reported_unauthorized(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Reporting an old token, or an empty one, changes nothing; reporting the current one
    makes the next call wait for exactly one refresh, and the new token is not reported."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        m.report_unauthorized("some-older-token")
        m.report_unauthorized("")
        assert state(m) is ManagerState.FRESH
        assert await m.get_access_token() == "AT0"
        assert endpoint.calls == 0
        m.report_unauthorized("AT0")
        assert state(m) is ManagerState.WAITING
        assert await m.get_access_token() == "AT1"
        assert await m.get_access_token() == "AT1"
        m.report_unauthorized("AT0")  # a late report of the old token
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_refresh_before_any_call_loads_the_login_first(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """refresh() on a manager that has not loaded a login yet reads storage, then refreshes
    that login (once)."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        refreshed = await m.refresh()
    assert (refreshed.access_token, endpoint.calls) == ("AT1", 1)
    assert await stored_refresh_token(storage) == "RT1"


async def test_a_short_token_waits_only_in_the_last_tenth_of_its_life(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A 100 s token: mandatory margin min(20 s, a tenth of 100 s) = 10 s. Just before it,
    callers are served while the refresh runs; from it on, they wait."""
    storage = InMemoryAuthStorage(login(clock, expires_in=100))
    start = clock.now
    endpoint.gate.clear()
    async with no_watch_manager(storage, clock, http) as m:
        clock.now = start + 100 - 10 - 0.001
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.REFRESHING_AHEAD
        clock.now = start + 100 - 10
        assert state(m) is ManagerState.WAITING
        endpoint.gate.set()
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_the_retry_policy_reaches_the_token_client(clock: FakeClock) -> None:
    """The manager's retry policy is the one its requests use: a refresh that cannot even
    connect is tried exactly ``attempts`` times (it was never sent, so retrying is safe)."""
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    storage = InMemoryAuthStorage(login(clock, expires_in=10))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http,
        TokenManager(
            GENERIC,
            storage,
            clock=clock,
            http_client=http,
            retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
            watch_interval=None,
        ) as m,
    ):
        clock.advance(20)
        with pytest.raises(NetworkError):
            await m.get_access_token()
    assert len(attempts) == 2


async def test_no_watcher_when_watching_is_off(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """watch_interval=None: no watcher task is started, by calls or by a refresh."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await m.refresh()
        assert m._watcher is None
    async with manager(storage, clock, http) as watched:
        await watched.get_access_token()
        assert watched._watcher is not None


async def test_the_refresh_task_is_named_for_debugging(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """The refresh runs in a task whose name says what it is (asyncio debug output, task
    dumps): ``vandamme-oauth refresh TokenManager(...)``."""
    storage = InMemoryAuthStorage(login(clock))
    endpoint.gate.clear()
    async with no_watch_manager(storage, clock, http) as m:
        waiter = asyncio.create_task(m.refresh())
        await endpoint.arrived.wait()
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert f"vandamme-oauth refresh {m!r}" in names
        endpoint.gate.set()
        await waiter


class ScriptedReads:
    """A storage whose reads return a script of logins (or raise StorageError), and then
    the last one forever; it counts reads."""

    def __init__(self, *script: AuthData | StorageError | None) -> None:
        self.script = list(script)
        self.reads = 0

    async def read_auth(self) -> AuthData | None:
        self.reads += 1
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, StorageError):
            raise item
        return item


async def test_the_poll_yields_once_per_change_and_rides_out_read_errors(
    clock: FakeClock,
) -> None:
    """For backends that cannot notify, the poll compares readings: it yields on a change
    only (not on every tick), again only on the next change, and a failed read (first or
    later) is skipped, not the end of watching."""
    a, b, c = login(clock, token="A"), login(clock, token="B"), login(clock, token="C")
    error = StorageError("unreachable")
    storage = ScriptedReads(error, a, a, error, a, b, b, b, c)
    changes = _poll(storage, 0.0)  # type: ignore[arg-type]
    await anext(changes)  # the first reading failed: a is a change from nothing known
    assert storage.reads == 2
    await anext(changes)  # a, a, error, a, then b
    assert storage.reads == 6
    await anext(changes)  # b, b, then c
    assert storage.reads == 9
    await changes.aclose()


@pytest.mark.parametrize("rotates", [True, False], ids=["rotating", "same-refresh-token"])
async def test_a_success_resets_the_backoff(
    rotates: bool, clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Fail, succeed, fail: the second failure backs off 1 s again (not 2 s), and the
    success lifted the pause, whether the provider rotates the refresh token or keeps it
    (so it is the success, not a new refresh token, that resets the backoff)."""
    storage = InMemoryAuthStorage(login(clock))
    kept = httpx.Response(200, json={"access_token": "AT-kept-rt", "expires_in": 3600})
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.fail = (503, {"error": "temporarily_unavailable"})
        clock.advance(3600 - 100)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert state(m) is ManagerState.BACKING_OFF
        endpoint.fail, endpoint.answer = None, None if rotates else kept
        clock.advance(1)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        token = await m.get_access_token()
        assert token == ("AT2" if rotates else "AT-kept-rt")
        assert await stored_refresh_token(storage) == ("RT2" if rotates else "RT0")
        assert state(m) is ManagerState.FRESH
        endpoint.fail, endpoint.answer = (503, {"error": "temporarily_unavailable"}), None
        clock.advance(3600 - 100)
        assert await m.get_access_token() == token
        await settled(m)
        clock.advance(0.999)
        assert state(m) is ManagerState.BACKING_OFF
        clock.advance(0.001)
        assert state(m) is not ManagerState.BACKING_OFF  # 1 s, counted from the failure
    assert endpoint.calls == 3


async def test_the_poll_takes_a_first_reading_before_it_compares(clock: FakeClock) -> None:
    """The poll's first reading is its reference: an unchanged login yields nothing."""
    a, b = login(clock, token="A"), login(clock, token="B")
    storage = ScriptedReads(a, a, b)
    changes = _poll(storage, 0.0)  # type: ignore[arg-type]
    await anext(changes)
    assert storage.reads == 3
    await changes.aclose()


# -- the watcher never adopts a reading older than what the manager holds ----------------------


class HookedReads(InMemoryAuthStorage):
    """In-memory storage that runs ``during_read`` (once) between taking its reading and
    returning it: what a slow backend lets happen while a read is in flight."""

    def __init__(self, initial: AuthData) -> None:
        super().__init__(initial)
        self.during_read: Callable[[], None] | None = None

    async def read_auth(self) -> AuthData | None:
        reading = await super().read_auth()
        hook, self.during_read = self.during_read, None
        if hook is not None:
            hook()
        return reading


async def test_the_watcher_looks_at_storage_only_after_the_refresh_in_flight(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A change noticed while a refresh runs is handled after the refresh has ended (the
    refresh re-reads storage itself): the watcher does not read storage meanwhile."""
    storage = CountingStorage(login(clock))
    endpoint.gate.clear()
    async with no_watch_manager(storage, clock, http) as m:
        refresh = asyncio.create_task(m.refresh())
        await endpoint.arrived.wait()
        reads = storage.reads
        changed = asyncio.create_task(m._storage_changed())
        await asyncio.sleep(0)  # one turn: the watcher runs up to its first suspension
        assert not changed.done()
        assert storage.reads == reads
        endpoint.gate.set()
        await changed
        assert storage.reads == reads + 1
        assert (await refresh).access_token == "AT1"
        assert m._token == "AT1"


async def test_the_watcher_drops_a_reading_the_manager_moved_past_while_it_read(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """While the watcher's read is in flight the manager adopts a newer login: the older
    reading that then arrives is not adopted over it."""
    storage = HookedReads(login(clock, token="STALE"))
    newer = login(clock, token="NEWER")
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "STALE"  # an adoption before this one
        storage.during_read = lambda: m._adopt(newer)
        await m._storage_changed()
        assert m._token == "NEWER"
        await m._storage_changed()  # a reading taken after the change is adopted
        assert m._token == "STALE"
    assert endpoint.calls == 0


async def test_the_watcher_drops_a_reading_taken_before_the_login_was_found_gone(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """While the watcher's read is in flight the manager learns the login is gone (its own
    read found nothing): the older reading that then arrives does not bring it back."""
    storage = HookedReads(login(clock, token="STALE"))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "STALE"
        storage.during_read = m._forget
        await m._storage_changed()
        assert m._auth is None
    assert endpoint.calls == 0


async def test_the_watcher_leaves_storage_to_a_refresh_that_started_while_it_read(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A refresh that starts while the watcher reads will read storage itself: the
    watcher's older reading is not adopted over what the refresh found."""
    storage = HookedReads(login(clock, token="STORED"))
    async with no_watch_manager(storage, clock, http) as m:
        m._adopt(login(clock, token="HELD"))

        def newer_login_then_a_refresh() -> None:
            storage._data = login(clock, token="NEWER").replace(refresh_token="RT-NEWER")
            m._start_refresh()

        storage.during_read = newer_login_then_a_refresh
        await m._storage_changed()
        assert m._token in {"HELD", "NEWER"}  # the refresh may have read already
        await settled(m)
        assert m._token == "NEWER"
    assert endpoint.calls == 0


async def test_the_watcher_never_replaces_a_login_held_for_an_outage(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A refreshed login that storage refused is held in memory: the watcher's reading of
    the older stored login must not replace it (the refresh token it holds is spent)."""
    storage = ExplodingStorage(login(clock))
    storage.error = StorageError("unreachable")
    clock.advance(3601)
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        await m._storage_changed()
        assert m._token == "AT1"
        assert m._unsaved is not None
        storage.error = None
    await assert_rotated_once(storage, endpoint)


async def test_a_manager_dropped_without_aclose_stops_its_watcher(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """Forgetting ``aclose()`` leaks no task: when the manager is collected its watcher
    (named for debugging) ends, with no storage change needed to notice."""
    storage = InMemoryAuthStorage(login(clock))
    m = manager(storage, clock, http)
    assert await m.get_access_token() == "AT0"
    watcher = m._watcher
    assert watcher is not None
    assert watcher.get_name() == f"vandamme-oauth watcher {m!r}"
    del m
    gc.collect()
    async with asyncio.timeout(10):  # a hang guard: without the finalizer it waits forever
        await asyncio.wait({watcher})
    assert watcher.cancelled()


async def test_aclose_waits_for_the_watcher_to_finish_its_cleanup(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """A watcher whose storage needs a few turns to unsubscribe (as Redis does) has ended
    when ``aclose()`` returns."""
    cleaned: list[bool] = []

    class SlowToUnsubscribe(InMemoryAuthStorage):
        async def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
            try:
                async for _ in super().changes(interval=interval):
                    yield
            finally:
                for _ in range(5):
                    await asyncio.sleep(0)  # an unsubscribe's round trips
                cleaned.append(True)

    m = manager(SlowToUnsubscribe(login(clock)), clock, http)
    assert await m.get_access_token() == "AT0"
    watcher = m._watcher
    assert watcher is not None
    await m.aclose()
    assert watcher.done()
    assert cleaned == [True]


# -- the edges that mutation testing found unpinned --------------------------------------------


async def test_get_auth_data_starts_the_refresh_ahead_at_the_first_instant_of_the_margin(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """At exactly expiry - margin, get_auth_data() serves the login and starts the
    refresh, like get_access_token()."""
    storage = InMemoryAuthStorage(login(clock))
    start = clock.now
    async with no_watch_manager(storage, clock, http) as m:
        assert (await m.get_auth_data()).access_token == "AT0"
        clock.now = start + 3600 - 300
        assert (await m.get_auth_data()).access_token == "AT0"
        assert m._task is not None
        await settled(m)
        assert (await m.get_auth_data()).access_token == "AT1"
    assert endpoint.calls == 1


async def test_a_stored_login_adopted_at_the_first_instant_of_its_margin_is_served_at_once(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A manager whose first call falls exactly on the stored token's expiry - margin gets
    that token (its refresh runs behind), not the refreshed one."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 300)
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_callers_waiting_in_the_last_seconds_get_the_valid_token_when_a_refresh_fails(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """In the mandatory window callers wait for the refresh; if it fails transiently they
    get the token that is still valid, not the error."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 10)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with no_watch_manager(storage, clock, http) as m:
        assert state(m) is ManagerState.EMPTY
        assert await m.get_access_token() == "AT0"
        assert endpoint.calls == 1
        assert state(m) is ManagerState.BACKING_OFF


async def test_a_held_login_is_stored_again_at_most_once_a_second(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """While storage refuses the refreshed login, calls are served from memory and try to
    store it again only once _UNSAVED_RETRY (1 s) has passed, not on every call."""
    storage = FlakyStorage(login(clock))
    storage.fail_writes = True
    clock.advance(3601)
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        assert storage.write_attempts == 1
        for _ in range(3):
            assert await m.get_access_token() == "AT1"
        clock.advance(0.999)
        assert await m.get_access_token() == "AT1"
        await settled(m)
        assert storage.write_attempts == 1  # no attempt yet
        clock.advance(0.001)
        assert await m.get_access_token() == "AT1"
        await settled(m)
        assert storage.write_attempts == 2
        storage.fail_writes = False


async def test_an_outage_is_retried_at_most_once_a_second(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """During a storage outage inside the margin the cached token is served, and storage
    is tried again only once a second."""
    storage = FlakyStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        storage.fail_reads = True
        clock.advance(3600 - 100)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        reads = storage.reads
        clock.advance(0.999)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert storage.reads == reads
        clock.advance(0.001)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert storage.reads == reads + 1
    assert endpoint.calls == 0


async def test_a_refresh_ahead_that_fails_with_nobody_waiting_is_not_reported_as_lost(
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refresh ahead whose failure nobody awaits, and one cancelled by aclose(): neither
    leaves "exception was never retrieved" (or a failing callback) in the asyncio log."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 100)
    endpoint.fail = (400, {"error": "invalid_grant"})
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await settled(m)
    endpoint.fail, endpoint.gate = None, asyncio.Event()
    m = no_watch_manager(InMemoryAuthStorage(login(clock)), clock, http, close_timeout=0)
    clock.advance(3600 - 100)
    assert await m.get_access_token() == "AT0"
    await endpoint.arrived.wait()
    await m.aclose()
    del m
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_only_one_watcher_runs_however_many_calls_take_the_slow_path(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Every slow-path call makes sure the watcher runs; there is still only one. (No rate
    floor: the fake clock stands still between the five refreshes.)"""
    storage = InMemoryAuthStorage(login(clock))
    async with manager(storage, clock, http, min_refresh_interval=0) as m:
        for _ in range(5):
            m.report_unauthorized(await m.get_access_token())
        names = [task.get_name() for task in asyncio.all_tasks()]
        assert names.count(f"vandamme-oauth watcher {m!r}") == 1


async def test_a_caller_cancelled_as_the_refresh_is_abandoned_is_cancelled(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A waiter that is itself being cancelled when aclose() abandons the refresh ends
    cancelled (its own cancellation wins), not with "the refresh was abandoned"."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    endpoint.gate.clear()
    m = no_watch_manager(storage, clock, http, close_timeout=0)
    waiter = asyncio.create_task(m.get_access_token())
    await endpoint.arrived.wait()
    refresh = m._task
    assert refresh is not None
    refresh.cancel()
    waiter.cancel()
    await asyncio.wait({waiter})
    assert waiter.cancelled()
    await m.aclose()


async def test_aclose_bounds_a_hanging_write_of_a_held_login(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """aclose()'s last attempt to store a held login gives up after close_timeout when
    storage hangs instead of failing."""

    class Hanging(InMemoryAuthStorage):
        def __init__(self, initial: AuthData) -> None:
            super().__init__(initial)
            self.mode = "fail"

        async def write_auth(self, data: AuthData) -> None:
            if self.mode == "fail":
                raise StorageError("unreachable")
            await asyncio.Event().wait()  # never answers

    storage = Hanging(login(clock))
    clock.advance(3601)
    m = no_watch_manager(storage, clock, http, close_timeout=0.01)
    assert await m.get_access_token() == "AT1"
    storage.mode = "hang"
    async with asyncio.timeout(10):  # a hang guard: close_timeout is 0.01 s
        await m.aclose()


async def test_a_one_second_token_is_served_for_half_its_life(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Even a token that lives one second gets proportional windows: half its life fresh,
    and callers wait only in its last tenth."""
    storage = InMemoryAuthStorage(login(clock, expires_in=1))
    start = clock.now
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.FRESH
        clock.now = start + 0.5
        assert state(m) is ManagerState.REFRESHING_AHEAD
        clock.now = start + 0.9
        assert state(m) is ManagerState.WAITING
    assert endpoint.calls == 0


async def test_a_rejected_token_offered_again_by_storage_is_not_served(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """An API refused AT0 and the refresh fails transiently; storage then offers a login
    with that same access token (a peer rewrote it): it is not served again."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        endpoint.fail = (503, {"error": "temporarily_unavailable"})
        m.report_unauthorized("AT0")
        with pytest.raises(TokenEndpointError):
            await m.get_access_token()
        await storage.write_auth(login(clock).replace(last_refresh=clock.now + 1))
        clock.advance(61)  # past any backoff
        with pytest.raises(TokenEndpointError):
            await m.get_access_token()


async def test_a_salvaged_refresh_token_storage_refused_is_stored_later_and_used(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A broken answer that still rotated the refresh token (RT1), while storage refuses
    writes: RT1 is held, stored once storage is back, and the next refresh sends RT1, not
    the spent RT0."""
    storage = FlakyStorage(login(clock))
    storage.fail_writes = True
    clock.advance(3601)
    endpoint.answer = httpx.Response(
        200, json={"access_token": "AT1", "refresh_token": "RT1", "expires_in": "soon"}
    )
    async with no_watch_manager(storage, clock, http) as m:
        with pytest.raises(TokenError, match="expires_in"):
            await m.get_access_token()
        storage.fail_writes, endpoint.answer = False, None
        clock.advance(1)  # the backoff after the broken answer
        assert await m.get_access_token() == "AT2"
    assert endpoint.sent == ["RT0", "RT1"]
    assert await stored_refresh_token(storage) == "RT2"


async def test_the_watcher_forgets_a_login_removed_from_storage(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A logout written elsewhere: the watcher's next look forgets the login, and calls
    then say there is no login (no refresh is attempted)."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        await storage.clear_auth()
        await m._storage_changed()
        assert state(m) is ManagerState.EMPTY
        with pytest.raises(NotAuthenticatedError):
            await m.get_access_token()
    assert endpoint.calls == 0
