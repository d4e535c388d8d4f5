"""TokenManager with an in-process token endpoint (httpx.MockTransport) gated by an Event."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    InMemoryAuthStorage,
    NotAuthenticatedError,
    ReauthenticationRequired,
    RetryPolicy,
    StorageError,
    TokenEndpointError,
    TokenError,
    TokenManager,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.conftest import FakeClock


class FakeTokenEndpoint:
    """Rotates refresh tokens; each answer waits for ``gate``; ``fail`` makes it refuse."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0
        self.arrived = asyncio.Event()
        self.fail: tuple[int, dict[str, str]] | None = None
        self.answer: httpx.Response | None = None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.arrived.set()
        await self.gate.wait()
        if self.answer is not None:
            return self.answer
        if self.fail is not None:
            return httpx.Response(self.fail[0], json=self.fail[1])
        form = dict(httpx.QueryParams(request.content.decode()))
        assert form["grant_type"] == "refresh_token"
        n = self.calls
        return httpx.Response(
            200, json={"access_token": f"AT{n}", "refresh_token": f"RT{n}", "expires_in": 3600}
        )


@pytest.fixture
def endpoint() -> FakeTokenEndpoint:
    return FakeTokenEndpoint()


@pytest.fixture
async def http(endpoint: FakeTokenEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handler)) as client:
        yield client


def login(clock: FakeClock, *, expires_in: float = 3600, token: str = "AT0") -> AuthData:
    return AuthData(
        access_token=token,
        refresh_token="RT0",
        expires_at=clock.now + expires_in,
        last_refresh=clock.now,
    )


def manager(
    storage: InMemoryAuthStorage, clock: FakeClock, http: httpx.AsyncClient
) -> TokenManager:
    return TokenManager(
        GENERIC, storage, clock=clock, http_client=http, retry=RetryPolicy(attempts=1)
    )


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


async def test_twenty_callers_share_one_refresh(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """20 callers inside the margin wait for one gated refresh and all get its token."""
    storage = InMemoryAuthStorage(login(clock))
    clock.advance(3600 - 299)
    endpoint.gate.clear()
    async with manager(storage, clock, http) as m:
        tasks = [asyncio.create_task(m.get_access_token()) for _ in range(20)]
        await endpoint.arrived.wait()
        assert not any(t.done() for t in tasks)
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
        assert await m.get_access_token() == "AT0"
        assert endpoint.calls == 1  # backing off: no second request yet
        clock.advance(5)
        endpoint.fail = None
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
    """A stale cache re-reads storage and adopts a fresh token without refreshing."""
    storage = InMemoryAuthStorage(login(clock))
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        clock.advance(3500)
        await storage.write_auth(login(clock, token="FROM-ELSEWHERE"))
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
        clock.advance(2)
        assert await m.get_access_token() == "AT1"


async def test_short_lived_tokens_use_half_their_life_as_margin(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """A 60 s token with a 300 s margin is not refreshed on every call."""
    storage = InMemoryAuthStorage(login(clock, expires_in=60))
    async with manager(storage, clock, http) as m:
        clock.advance(29)
        assert await m.get_access_token() == "AT0"
        clock.advance(2)
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

    async def read_auth(self) -> AuthData | None:
        if self.fail_reads:
            raise StorageError("storage unreachable")
        return await super().read_auth()

    async def write_auth(self, data: AuthData) -> None:
        if self.fail_writes:
            raise StorageError("storage unreachable")
        await super().write_auth(data)


async def test_storage_outage_serves_a_valid_cached_token_but_never_an_expired_one(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Inside the margin a read failure keeps the cached token; past expiry it raises."""
    storage = FlakyStorage(login(clock))
    async with manager(storage, clock, http) as m:
        assert await m.get_access_token() == "AT0"
        storage.fail_reads = True
        clock.advance(3600 - 100)
        assert await m.get_access_token() == "AT0"
        clock.advance(101)
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
    stored = await storage.read_auth()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT1", "RT1")
    assert endpoint.calls == 1
