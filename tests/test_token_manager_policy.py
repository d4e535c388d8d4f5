"""The token manager's policy holes, closed: a client the provider refuses is not retried,
and a forced refresh that fails never withholds a valid token."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.managers import login, no_watch_manager, settled, state
from vandamme_oauth import (
    AuthData,
    InMemoryAuthStorage,
    ManagerState,
    NetworkError,
    OAuthError,
    ReauthenticationRequired,
    StorageError,
    TokenEndpointError,
)

if TYPE_CHECKING:
    from tests.conftest import FakeClock
    from tests.support.managers import FakeTokenEndpoint


async def test_a_refused_client_is_not_retried_and_says_how_to_fix_it(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """400 invalid_client (a deleted client, a rotated secret): one request, the valid token
    served until it expires, then an error naming the fix, without another request."""
    storage = InMemoryAuthStorage(login(clock))
    endpoint.fail = (400, {"error": "invalid_client", "error_description": "unknown client"})
    async with no_watch_manager(storage, clock, http) as m:
        clock.advance(3600 - 100)  # inside the margin: a refresh ahead starts
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert state(m) is ManagerState.MISCONFIGURED
        for _ in range(5):  # after any backoff would be over: still no request
            clock.advance(15)
            assert await m.get_access_token() == "AT0"
        clock.advance(30)  # expired
        for _ in range(3):
            with pytest.raises(TokenEndpointError) as caught:
                await m.get_access_token()
            assert not isinstance(caught.value, ReauthenticationRequired)
            assert caught.value.error == "invalid_client"
            assert "the provider refuses this client: check its client id and secret" in str(
                caught.value
            )
            assert str(caught.value).endswith(
                "then log in again: vandamme-oauth login --issuer https://idp.example "
                "--client-id cid --scope openid --scope offline_access --name generic"
            )
    assert endpoint.calls == 1


async def test_a_new_login_heals_a_refused_client(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A login with a new refresh token in storage (the user logged in again, with a
    working client): served at once, and refreshed normally from then on."""
    storage = InMemoryAuthStorage(login(clock))
    endpoint.fail = (401, {"error": "invalid_client"})
    async with no_watch_manager(storage, clock, http) as m:
        clock.advance(3601)
        with pytest.raises(ReauthenticationRequired):  # a 401 on refresh is permanent
            await m.get_access_token()
    storage = InMemoryAuthStorage(login(clock))
    endpoint.fail = (400, {"error": "unauthorized_client"})
    async with no_watch_manager(storage, clock, http) as m:
        clock.advance(3601)
        with pytest.raises(TokenEndpointError, match="refuses this client"):
            await m.get_access_token()
        assert state(m) is ManagerState.MISCONFIGURED
        fresh = login(clock, token="AT-NEW").replace(refresh_token="RT-NEW")
        await storage.write_auth(fresh)
        assert await m.get_access_token() == "AT-NEW"
        assert state(m) is ManagerState.FRESH
        endpoint.fail = None
        clock.advance(3601)
        assert await m.get_access_token() == f"AT{endpoint.calls}"
    assert endpoint.sent == ["RT0", "RT0", "RT-NEW"]


async def test_a_failed_forced_refresh_keeps_serving_the_valid_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """refresh() answered 503 with 58 minutes left: the caller of refresh() gets the error,
    every other call keeps getting the valid token, and no request is sent meanwhile."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(120)
        endpoint.fail = (503, {"error": "temporarily_unavailable"})
        with pytest.raises(TokenEndpointError) as caught:
            await m.refresh()
        assert caught.value.transient
        assert state(m) is ManagerState.BACKING_OFF
        for _ in range(10):
            assert await m.get_access_token() == "AT0"
            clock.advance(1)
        assert endpoint.calls == 1
        endpoint.fail = None
        refreshed = await m.refresh()
        assert refreshed.access_token == "AT2"
        assert await m.get_access_token() == "AT2"
    assert endpoint.calls == 2


async def test_a_forced_refresh_refreshes_a_fresh_token_once(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """refresh() on a fresh token sends one request and returns the new login; callers
    get the new token afterwards."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        assert (await m.refresh()).access_token == "AT1"
        assert await m.get_access_token() == "AT1"
    assert endpoint.calls == 1


async def test_a_forced_refresh_of_a_dead_login_raises(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """invalid_grant on refresh(): the caller learns it, and the valid token is still
    served to the others until it expires."""
    storage = InMemoryAuthStorage(login(clock))
    endpoint.fail = (400, {"error": "invalid_grant"})
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        with pytest.raises(ReauthenticationRequired):
            await m.refresh()
        assert await m.get_access_token() == "AT0"
        assert state(m) is ManagerState.DEAD
        with pytest.raises(ReauthenticationRequired):
            await m.refresh()
    assert endpoint.calls == 1


async def test_a_dead_refresh_token_offered_again_by_storage_stays_dead(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Storage rewritten with the rejected refresh token (another access token, the same
    refresh token): still DEAD, and no request is sent for it."""
    storage = InMemoryAuthStorage(login(clock))
    endpoint.fail = (400, {"error": "invalid_grant"})
    async with no_watch_manager(storage, clock, http) as m:
        clock.advance(3601)
        with pytest.raises(ReauthenticationRequired):
            await m.get_access_token()
        await storage.write_auth(login(clock, token="AT-SAME-RT", expires_in=-1))
        with pytest.raises(ReauthenticationRequired):
            await m.get_access_token()
        assert state(m) is ManagerState.DEAD
    assert endpoint.calls == 1


async def test_a_forced_refresh_takes_a_login_another_process_just_stored(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """refresh() finds a new login in storage (another process refreshed): that is the
    refresh, no request. Storage holding our very token (rewritten, other fields changed)
    is no refresh: then one request."""
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        theirs = login(clock, token="AT-THEIRS").replace(refresh_token="RT-THEIRS")
        await storage.write_auth(theirs)
        assert await m.refresh() == theirs
        assert endpoint.calls == 0
        await storage.write_auth(theirs.replace(email="same-token@example.com"))
        assert (await m.refresh()).access_token == "AT1"
    assert endpoint.sent == ["RT-THEIRS"]


class FailingReads(InMemoryAuthStorage):
    """Storage whose reads fail once ``down`` is set."""

    down = False

    async def read_auth(self) -> AuthData | None:
        if self.down:
            raise StorageError("storage is down")
        return await super().read_auth()


async def test_a_storage_outage_fails_a_forced_refresh_and_never_serves_a_rejected_token(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Storage down: a valid token is served to plain callers, but refresh() raises the
    StorageError, and a token an API rejected is not served (the error instead)."""
    storage = FailingReads(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        storage.down = True
        with pytest.raises(StorageError, match="storage is down"):
            await m.refresh()
        clock.advance(3600 - 100)  # inside the margin: the refresh ahead fails to read
        assert await m.get_access_token() == "AT0"
        await settled(m)
        m.report_unauthorized("AT0")
        with pytest.raises(StorageError, match="storage is down"):
            await m.get_access_token()
    assert endpoint.calls == 0


async def test_a_waiters_error_keeps_its_cause(clock: FakeClock) -> None:
    """A network failure reaches every waiter with the transport's exception as its cause."""

    async def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3601)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http,
        no_watch_manager(storage, clock, http) as m,
    ):
        results = await asyncio.gather(
            *(m.get_access_token() for _ in range(3)), return_exceptions=True
        )
    assert all(isinstance(r, NetworkError) for r in results)
    assert all(isinstance(r.__cause__, httpx.ConnectError) for r in results)  # type: ignore[union-attr]
    assert len({id(r) for r in results}) == 3  # each caller its own copy


async def test_after_aclose_a_fresh_login_is_still_served_whole(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """The hot path needs nothing that aclose() stops: get_access_token() and
    get_auth_data() still answer from memory; what needs storage says the manager closed."""
    storage = InMemoryAuthStorage(login(clock))
    m = no_watch_manager(storage, clock, http)
    assert (await m.get_auth_data()).access_token == "AT0"
    await m.aclose()
    assert (await m.get_auth_data()).access_token == "AT0"
    assert await m.get_access_token() == "AT0"
    clock.advance(3601)
    with pytest.raises(OAuthError, match="this TokenManager is closed"):
        await m.get_auth_data()


async def test_a_report_about_an_older_token_is_ignored_and_says_nothing(
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a refresh, a late 401 report about the previous token changes nothing and
    logs nothing; a report about the current one logs once however often it comes."""
    caplog.set_level(logging.INFO, "vandamme_oauth")
    storage = InMemoryAuthStorage(login(clock))
    async with no_watch_manager(storage, clock, http) as m:
        assert (await m.refresh()).access_token == "AT1"
        caplog.clear()
        m.report_unauthorized("AT0")
        m.report_unauthorized("")
        assert state(m) is ManagerState.FRESH
        assert caplog.messages == []
        m.report_unauthorized("AT1")
        m.report_unauthorized("AT1")
        assert state(m) is ManagerState.WAITING
        assert caplog.messages == ["access token reported unauthorized; the next call refreshes"]
