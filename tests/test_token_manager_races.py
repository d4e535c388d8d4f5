"""The token manager when storage changes under a refresh, as unit tests on in-memory
storage: another program's login or a logout lands while our request is in flight (ours is
dropped and revoked), storage loses the login without a logout (it is written back, the
rotated refresh token first), a storage without compare-and-swap, and callers that leave.

The same races against real Redis and real files are in tests/integration/test_storage_races.py
and tests/storage/test_redis_data_loss.py."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.managers import (
    PlainStorage,
    login,
    manager,
    no_watch_manager,
    settled,
    state,
)
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    InMemoryAuthStorage,
    ManagerState,
    NotAuthenticatedError,
    StorageError,
    TokenEndpointError,
    TokenError,
    TokenManager,
)
from vandamme_oauth._endpoints import DEFAULT_MAX_REFRESHES, endpoint_for

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from tests.conftest import FakeClock
    from tests.support.managers import FakeTokenEndpoint


class Revocations:
    """The provider's revocation endpoint next to ``endpoint``: records the tokens sent;
    ``mode`` makes it answer 200, 503 or never."""

    def __init__(self, endpoint: FakeTokenEndpoint) -> None:
        self.endpoint = endpoint
        self.tokens: list[str] = []
        self.mode = "ok"

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/revoke":
            return await self.endpoint.handler(request)
        self.tokens.append(dict(httpx.QueryParams(request.content.decode()))["token"])
        if self.mode == "hang":
            await asyncio.Event().wait()
        return httpx.Response(503 if self.mode == "refuse" else 200)

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(self.handler)) as http:
            yield http


class MarkedStorage(InMemoryAuthStorage):
    """In-memory storage that tells a logout from a loss, as Redis does (a logout leaves a
    mark; a flush does not), and says when someone asks for its lock."""

    def __init__(self, initial: AuthData | None = None) -> None:
        super().__init__(initial)
        self.out = False
        self.fail_writes = False
        self.lock_asked = asyncio.Event()

    async def write_auth(self, data: AuthData) -> None:
        if self.fail_writes:
            raise StorageError("storage unreachable")
        self.out = False
        await super().write_auth(data)

    async def clear_auth_locked(self) -> None:
        await super().clear_auth_locked()
        self.out = True

    async def logged_out(self) -> bool:
        return self.out

    def flush(self) -> None:
        """Lose the login without a logout (a Redis FLUSHALL or a restart without disk)."""
        self._data = None

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        self.lock_asked.set()
        async with super().lock():
            yield


def theirs(clock: FakeClock) -> AuthData:
    """A login another program stored: a new refresh token, valid for an hour."""
    return AuthData(
        access_token="AT9", refresh_token="RT9", expires_at=clock.now + 3600, last_refresh=clock.now
    )


@pytest.mark.parametrize("mode", ["ok", "refuse", "hang"])
async def test_a_login_stored_during_our_refresh_wins_and_ours_is_revoked(
    clock: FakeClock, endpoint: FakeTokenEndpoint, mode: str
) -> None:
    """Another program logs in while our refresh is in flight: its login is served and kept,
    and the refresh token our refresh obtained (RT1) is revoked, never written. A revocation
    endpoint that refuses or never answers (close_timeout) changes nothing of that."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    revocations = Revocations(endpoint)
    revocations.mode = mode
    async with (
        revocations.client() as http,
        no_watch_manager(storage, clock, http, close_timeout=0) as m,
    ):
        endpoint.gate.clear()
        call = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        await storage.write_auth(theirs(clock))
        endpoint.gate.set()
        assert await call == "AT9"
        assert state(m) is ManagerState.FRESH
    assert await storage.read_auth() == theirs(clock)
    assert revocations.tokens == ["RT1"]


async def test_a_logout_during_our_refresh_stays_a_logout(
    clock: FakeClock, endpoint: FakeTokenEndpoint
) -> None:
    """Another process logs out (under its own lock, which ours cannot see) while our refresh
    is in flight: the caller is told there is no login, storage stays empty, and the refresh
    token the server just issued is revoked."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    revocations = Revocations(endpoint)
    async with revocations.client() as http, no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        call = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        await storage.clear_auth_locked()
        endpoint.gate.set()
        with pytest.raises(NotAuthenticatedError):
            await call
        assert state(m) is ManagerState.EMPTY
    assert await storage.read_auth() is None
    assert revocations.tokens == ["RT1"]


async def test_a_storage_without_compare_and_swap_is_written_plainly(
    clock: FakeClock, endpoint: FakeTokenEndpoint
) -> None:
    """Five methods are enough: the rotated login is written with write_auth and served,
    and nothing is revoked."""
    storage = PlainStorage(login(clock, expires_in=-1))
    revocations = Revocations(endpoint)
    async with revocations.client() as http, no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
    stored = await storage.read_auth()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT1", "RT1")
    assert revocations.tokens == []


async def test_a_login_lost_without_a_logout_is_written_back_and_refreshed(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Storage forgets the login without a logout (data loss): the next refresh writes the
    login we hold back, refreshes it, and stores the rotated one."""
    storage = MarkedStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        storage.flush()
        clock.advance(3601)
        assert await m.get_access_token() == "AT1"
    assert endpoint.sent == ["RT0"]
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.refresh_token == "RT1"


async def test_a_refresh_held_in_memory_is_what_a_data_loss_restores(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A refresh storage refused (RT1, held in memory), then storage loses everything: the
    login written back is the one with RT1 (RT0 is spent at the server), without a second
    refresh."""
    storage = MarkedStorage(login(clock, expires_in=-1))
    storage.fail_writes = True
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        assert state(m) is ManagerState.HOLDING_UNSAVED
        storage.flush()
        storage.fail_writes = False
        clock.advance(2)  # past the wait before storing again
        assert await m.get_access_token() == "AT1"
        await settled(m)
        assert state(m) is ManagerState.FRESH
    stored = await storage.read_auth()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT1", "RT1")
    assert endpoint.calls == 1


async def test_a_login_stored_while_we_waited_for_the_lock_is_adopted_not_overwritten(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Storage that knows logouts: a program holding the lock stores a new login while our
    refresh waits for the lock; we take it (no request), and never write ours back."""
    storage = MarkedStorage(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        async with storage.lock():
            storage.lock_asked.clear()
            call = asyncio.ensure_future(m.get_access_token())
            await storage.lock_asked.wait()
            await storage.write_auth(theirs(clock))
        assert await call == "AT9"
    assert await storage.read_auth() == theirs(clock)
    assert endpoint.calls == 0


async def test_a_cancelled_caller_leaves_nothing_behind(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Callers that leave while the refresh is in flight leave no future behind; the refresh
    goes on for the one that stayed."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        calls = [asyncio.ensure_future(m.get_access_token()) for _ in range(3)]
        await endpoint.arrived.wait()
        assert len(m._waiters) == 3
        for call in calls[:2]:
            call.cancel()
        await asyncio.wait(calls[:2])
        assert len(m._waiters) == 1
        endpoint.gate.set()
        assert await calls[2] == "AT1"
        assert not m._waiters
    assert endpoint.calls == 1


async def test_callers_joining_a_refresh_in_flight_leave_nothing_behind_when_cancelled(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Callers that arrive once the refresh is in flight join it (the hot path's own branch)
    and, cancelled, remove their futures; the one that stays gets the new token."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        first = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        late = [asyncio.ensure_future(m.get_access_token()) for _ in range(3)]
        await asyncio.sleep(0)  # one turn: each late caller takes its first step and joins
        assert len(m._waiters) == 4
        for call in late[:2]:
            call.cancel()
        await asyncio.wait(late[:2])
        assert len(m._waiters) == 2
        endpoint.gate.set()
        assert await first == await late[2] == "AT1"
        assert not m._waiters
    assert endpoint.calls == 1


async def test_a_caller_cancelled_as_the_refresh_settles_it_is_cancelled(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """The refresh ends and sets a caller's future; before that caller resumes, it is
    cancelled (a timeout expiring at that moment): it raises CancelledError, the other
    caller gets the token, and nothing is left behind."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        leaving = asyncio.ensure_future(m.get_access_token())
        staying = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        assert m._task is not None
        # Runs right after the manager's own done-callback has settled every waiter.
        m._task.add_done_callback(lambda _: leaving.cancel())
        endpoint.gate.set()
        assert await staying == "AT1"
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert not m._waiters
    assert endpoint.calls == 1


async def test_a_transient_failure_at_the_instant_of_expiry_serves_nothing(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """At the exact instant the token expires, a refresh that fails with 503 raises that
    error (a token is valid strictly before its expiry), and says nothing of a refused
    client."""
    expiring = login(clock)
    storage = InMemoryAuthStorage(expiring)
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        assert expiring.expires_at is not None
        clock.now = expiring.expires_at
        with pytest.raises(TokenEndpointError) as caught:
            await m.get_access_token()
        assert caught.value.error == "temporarily_unavailable"
        assert "refuses this client" not in str(caught.value)
        assert state(m) is ManagerState.BACKING_OFF
    assert endpoint.calls == 1


async def test_a_refresh_that_keeps_the_refresh_token_ends_a_backoff(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A provider that does not rotate refresh tokens: after a 503 and its backoff, the
    successful refresh makes the manager FRESH again (not still BACKING_OFF)."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    endpoint.fail = (503, {"error": "temporarily_unavailable"})
    async with no_watch_manager(storage, clock, http) as m:
        with pytest.raises(TokenEndpointError):
            await m.get_access_token()
        assert state(m) is ManagerState.BACKING_OFF
        endpoint.fail = None
        endpoint.answer = httpx.Response(
            200, json={"access_token": "AT1", "refresh_token": "RT0", "expires_in": 3600}
        )
        clock.advance(61)
        assert await m.get_access_token() == "AT1"
        assert state(m) is ManagerState.FRESH


async def test_the_refresh_bound_is_the_managers_option(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """max_refreshes reaches the shared endpoint of its origin; unset, it is 16."""
    bounded = GENERIC.replace(token_endpoint="https://bounded.example/token")
    unbounded = GENERIC.replace(token_endpoint="https://default-bound.example/token")
    for n, (provider, bound) in enumerate([(bounded, 3), (unbounded, None)], start=1):
        storage = InMemoryAuthStorage(login(clock, expires_in=-1))
        m = (
            TokenManager(provider, storage, clock=clock, http_client=http)
            if bound is None
            else TokenManager(provider, storage, clock=clock, http_client=http, max_refreshes=bound)
        )
        async with m:
            assert await m.get_access_token() == f"AT{n}"
    assert endpoint_for(bounded.token_endpoint).max_refreshes == 3
    assert endpoint_for(unbounded.token_endpoint).max_refreshes == DEFAULT_MAX_REFRESHES == 16


async def test_a_token_rejected_right_after_its_refresh_waits_for_the_rate_floor(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """An API rejects the token refreshed 0.25 s ago: the caller is told when the next
    refresh may start (0.75 s later, min_refresh_interval), and it starts then."""
    storage = InMemoryAuthStorage(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT1"
        clock.advance(0.25)
        m.report_unauthorized("AT1")
        with pytest.raises(TokenError) as caught:
            await m.get_access_token()
        assert str(caught.value) == (
            "an API rejected the token refreshed less than 1 s ago; the next refresh may "
            "start in 0.75 s (min_refresh_interval)"
        )
        clock.advance(0.75)
        assert await m.get_access_token() == "AT2"
    assert endpoint.calls == 2


async def test_a_refresh_started_again_from_inside_its_first_step_is_the_same_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """The refresh task's first step may run inside the call that starts it (Python 3.12+
    starts it eagerly): a start asked for meanwhile (here: from the storage read the task
    makes) joins it instead of making a second task and a second request."""
    started: list[object] = []

    class Reentrant(InMemoryAuthStorage):
        async def read_auth(self) -> AuthData | None:
            if not started:
                started.append(object())
                m._start_refresh()
            return await super().read_auth()

    storage = Reentrant(login(clock, expires_in=-1))
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        call = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        refreshes = [
            t for t in asyncio.all_tasks() if t.get_name().startswith("vandamme-oauth refresh")
        ]
        assert len(refreshes) == 1
        assert refreshes[0] is m._task
        endpoint.gate.set()
        assert await call == "AT1"
        await settled(m)
    assert endpoint.calls == 1


async def test_aclose_does_not_wait_for_ever_on_a_watcher_that_ignores_its_cancellation(
    clock: FakeClock, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A storage client that swallows the watcher's cancellation: aclose() still returns,
    after close_timeout, and says so."""
    release = asyncio.Event()

    class Stubborn(InMemoryAuthStorage):
        async def changes(self, *, interval: float = 0.5) -> AsyncGenerator[None, None]:
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()
            yield

    m = manager(Stubborn(login(clock)), clock, http, close_timeout=0.01)
    async with m:
        assert await m.get_access_token() == "AT0"
        watcher = m._watcher
        assert watcher is not None
    assert "the storage watcher did not stop within 0.01 s" in caplog.text
    release.set()
    await asyncio.wait({watcher})
