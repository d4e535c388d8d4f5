"""Integration fixtures: the real OpenID provider and a helper that logs in through it."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.provider import RunningProvider, run_provider
from tests.support.user_agent import BrowserResult, run_browser
from vandamme_oauth import AuthData, AuthStorage, OAuthFlow, ProviderConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[RunningProvider]:
    """One real oidc-provider process for the whole run (loopback, ephemeral port)."""
    with run_provider() as running:
        yield running


@pytest.fixture
async def provider_config(oidc_provider: RunningProvider) -> ProviderConfig:
    """The test provider, configured by discovery."""
    return await ProviderConfig.discover(
        oidc_provider.issuer,
        client_id=oidc_provider.client_id,
        scopes=["openid", "offline_access", "email"],
        name="test",
    )


@dataclass
class Login:
    """The outcome of a scripted login."""

    auth: AuthData
    browser: BrowserResult
    url: str


class BrowserQueue:
    """An ``open_browser`` that hands the authorization URL to the test."""

    def __init__(self) -> None:
        self.urls: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, url: str) -> None:
        self.urls.put_nowait(url)

    async def next_url(self, flow_task: asyncio.Task[Any]) -> str:
        """The next URL the flow asked to open; fails at once if the flow ended instead."""
        getter = asyncio.ensure_future(self.urls.get())
        done, _ = await asyncio.wait({getter, flow_task}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            flow_task.result()  # raises the flow's error
            raise AssertionError("the flow finished without opening a browser")
        return getter.result()


@asynccontextmanager
async def pending_login(
    provider: ProviderConfig, storage: AuthStorage, **authenticate: Any
) -> AsyncIterator[tuple[asyncio.Task[AuthData], str]]:
    """Start ``OAuthFlow.authenticate()`` and yield its task and the URL it asked the browser
    to open; on exit a task that has not finished is cancelled (closing the server)."""
    queue = BrowserQueue()
    async with OAuthFlow(provider, storage, open_browser=queue) as flow:
        task = asyncio.create_task(flow.authenticate(timeout=60, **authenticate))
        try:
            yield task, await queue.next_url(task)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def scripted_login(
    provider: ProviderConfig, storage: AuthStorage, *, login: str = "alice"
) -> Login:
    """Run OAuthFlow.authenticate() with the scripted user agent as the browser."""
    async with pending_login(provider, storage) as (task, url):
        result = await run_browser(url, login=login)
        auth = await task
    return Login(auth=auth, browser=result, url=url)
