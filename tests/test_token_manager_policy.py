"""The token manager's policy holes, closed: a client the provider refuses is not retried,
and a forced refresh that fails never withholds a valid token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.managers import login, no_watch_manager, settled, state
from vandamme_oauth import (
    InMemoryAuthStorage,
    ManagerState,
    ReauthenticationRequired,
    TokenEndpointError,
)

if TYPE_CHECKING:
    import httpx

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
