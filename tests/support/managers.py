"""What the token manager's tests share: an in-process token endpoint (httpx.MockTransport)
gated by an Event, logins on a fake clock, managers built on them, and ways to wait for the
manager's own tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx

from tests.test_protocol import GENERIC
from vandamme_oauth import AuthData, InMemoryAuthStorage, ManagerState, RetryPolicy, TokenManager

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from tests.conftest import FakeClock
    from vandamme_oauth import AuthStorage


class FakeTokenEndpoint:
    """Rotates refresh tokens; each answer waits for ``gate``; ``fail`` makes it refuse."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0
        self.arrived = asyncio.Event()
        self.fail: tuple[int, dict[str, str]] | None = None
        self.answer: httpx.Response | None = None
        self.sent: list[str] = []  # the refresh tokens the requests carried

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.sent.append(dict(httpx.QueryParams(request.content.decode()))["refresh_token"])
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


class PlainStorage:
    """An AuthStorage with only the five required methods (no compare-and-swap)."""

    def __init__(self, initial: AuthData) -> None:
        self.inner = InMemoryAuthStorage(initial)

    async def read_auth(self) -> AuthData | None:
        return await self.inner.read_auth()

    async def write_auth(self, data: AuthData) -> None:
        await self.inner.write_auth(data)

    async def clear_auth(self) -> None:
        await self.inner.clear_auth()

    async def is_authenticated(self) -> bool:
        return await self.inner.is_authenticated()

    def lock(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.inner.lock()


def login(clock: FakeClock, *, expires_in: float = 3600, token: str = "AT0") -> AuthData:
    return AuthData(
        access_token=token,
        refresh_token="RT0",
        expires_at=clock.now + expires_in,
        last_refresh=clock.now,
    )


def manager(
    storage: AuthStorage, clock: FakeClock, http: httpx.AsyncClient, **options: Any
) -> TokenManager:
    """A manager on ``clock`` and ``http``; its windows are exact (no refresh jitter)
    unless ``refresh_jitter`` is given."""
    options.setdefault("refresh_jitter", 0.0)
    return TokenManager(
        GENERIC, storage, clock=clock, http_client=http, retry=RetryPolicy(attempts=1), **options
    )


def no_watch_manager(
    storage: AuthStorage, clock: FakeClock, http: httpx.AsyncClient, **options: Any
) -> TokenManager:
    """A manager without its storage watcher: only its own calls read storage."""
    return manager(storage, clock, http, watch_interval=None, **options)


def answer_with_expires_in(
    endpoint: FakeTokenEndpoint, expires_in: str
) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    """A token endpoint answering AT1/RT1 with ``expires_in`` spelled as given (raw JSON)."""

    async def answer(request: httpx.Request) -> httpx.Response:
        endpoint.calls += 1
        body = f'{{"access_token": "AT1", "refresh_token": "RT1", "expires_in": {expires_in}}}'
        return httpx.Response(200, content=body.encode())

    return answer


def state(m: TokenManager) -> ManagerState:
    """The manager's state now (a call, so that type checkers do not narrow it)."""
    return m.state


async def stored_refresh_token(storage: AuthStorage) -> str | None:
    """The refresh token storage holds now (failing if it holds no login)."""
    stored = await storage.read_auth()
    assert stored is not None
    return stored.refresh_token


async def assert_rotated_once(storage: AuthStorage, endpoint: FakeTokenEndpoint) -> None:
    """Exactly one refresh reached the endpoint and its rotated refresh token is stored."""
    assert await stored_refresh_token(storage) == "RT1"
    assert endpoint.calls == 1


async def settled(m: TokenManager) -> None:
    """Wait until the manager's refresh task (if any) has ended."""
    while (task := m._task) is not None:
        await asyncio.wait({task})
        await asyncio.sleep(0)  # let its done-callback run


def watch_adoptions(m: TokenManager) -> asyncio.Event:
    """An event set each time the manager's watcher has handled a storage change."""
    event = asyncio.Event()
    handle = m._storage_changed

    async def spy() -> None:
        await handle()
        event.set()

    m._storage_changed = spy  # type: ignore[method-assign]
    return event


async def until_seen(
    adopted: asyncio.Event, seen: Callable[[], bool], change: Callable[[], Awaitable[object]]
) -> None:
    """Make ``change`` (again, if the watcher took its first reading after it) until the
    watcher has handled it and ``seen()`` holds."""
    async with asyncio.timeout(30):  # a hang guard: a watcher that never sees it fails
        while not seen():
            adopted.clear()
            await change()
            waiter = asyncio.ensure_future(adopted.wait())
            await asyncio.wait({waiter}, timeout=0.2)
            waiter.cancel()
