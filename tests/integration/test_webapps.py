"""Login inside web apps (the aiohttp and Starlette examples), against the real provider,
on real loopback servers."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web

from harness.redis_server import RedisServer
from tests.integration.test_examples import load_example
from tests.support.user_agent import run_browser
from vandamme_oauth import ProviderConfig, RedisAuthStorage

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def aiohttp_app(
    provider: ProviderConfig, redis_url: str | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    sock = listening_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    module = load_example("aiohttp_webapp")
    app = module.make_app(
        provider, base_url=base, secret=secrets.token_bytes(32), redis_url=redis_url
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base, app[module.LOGINS]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def starlette_app(
    provider: ProviderConfig, redis_url: str | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    sock = listening_socket()  # already listening: requests queue until uvicorn accepts
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app, logins = load_example("starlette_webapp").make_app(
        provider, base_url=base, secret=secrets.token_bytes(32), redis_url=redis_url
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield base, logins
    finally:
        server.should_exit = True
        await task
        sock.close()


AppFactory = Callable[..., Any]


@pytest.mark.parametrize("make", [aiohttp_app, starlette_app], ids=["aiohttp", "starlette"])
async def test_web_app_serves_each_users_token_from_its_login_pool_on_redis(
    provider_config: ProviderConfig, redis_server: RedisServer, make: AppFactory
) -> None:
    """With Redis: the login lands under the user's key; /me gets a valid token for that
    user through the LoginPool, /health lists the user's login as fresh, and a user who
    never signed in is told how to."""
    user = f"user{secrets.token_hex(4)}"
    async with (
        make(provider_config, redis_server.url) as (base, logins),
        httpx.AsyncClient(trust_env=False, timeout=30) as browser,
    ):
        start = await browser.get(f"{base}/login", params={"user": user})
        result = await run_browser(start.headers["location"], login=user, client=browser)
        assert result.final_status == 200
        reader = RedisAuthStorage.from_url(redis_server.url, key=f"webapp:{user}")
        stored = await reader.read_auth()
        await reader.aclose()
        assert stored is not None
        assert stored.account_id == user
        assert await logins[user].read_auth() == stored
        me = await browser.get(f"{base}/me", params={"user": user})
        assert (me.status_code, me.text) == (200, f"{user} holds a valid access token for {user}.")
        health = await browser.get(f"{base}/health")
        assert health.json() == {user: "fresh"}
        stranger = await browser.get(f"{base}/me", params={"user": "nobody"})
        assert stranger.status_code == 401
        assert stranger.text == "nobody is not signed in: /login?user=nobody"


@pytest.mark.parametrize("make", [aiohttp_app, starlette_app], ids=["aiohttp", "starlette"])
async def test_web_app_signs_its_users_in(
    provider_config: ProviderConfig, make: AppFactory
) -> None:
    """/login sets a signed HttpOnly SameSite cookie and redirects to the provider; the
    callback stores the tokens under the app's key for that user; the cookie is cleared."""
    async with (
        make(provider_config) as (base, logins),
        httpx.AsyncClient(trust_env=False, timeout=30) as browser,
    ):
        start = await browser.get(f"{base}/login", params={"user": "bob"})
        assert start.status_code == 302
        cookie = start.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        result = await run_browser(start.headers["location"], login="bob", client=browser)
        assert result.final_status == 200
        assert result.final_text == "Signed in bob as bob@example.test."
        stored = await logins["bob"].read_auth()
        assert stored is not None
        assert stored.account_id == "bob"
        assert "vandamme_oauth_login" not in browser.cookies


@pytest.mark.parametrize("make", [aiohttp_app, starlette_app], ids=["aiohttp", "starlette"])
async def test_web_app_refuses_forged_tampered_and_replayed_callbacks(
    provider_config: ProviderConfig, make: AppFactory
) -> None:
    """No cookie, a tampered cookie, and a replay of a completed login are all refused."""
    async with (
        make(provider_config) as (base, logins),
        httpx.AsyncClient(trust_env=False, timeout=30) as browser,
    ):
        forged = await browser.get(f"{base}/auth/callback", params={"code": "c", "state": "s"})
        assert forged.status_code == 400
        assert "no login in progress" in forged.text

        start = await browser.get(f"{base}/login", params={"user": "eve"})
        cookie = browser.cookies["vandamme_oauth_login"]
        result = await run_browser(
            start.headers["location"], login="eve", follow_callback=False, client=browser
        )
        browser.cookies.clear()  # from here on the test sends the cookie by hand
        body, signature = cookie.rsplit(".", 1)
        tampered = await browser.get(
            result.callback_url,
            headers={"Cookie": "vandamme_oauth_login=" + f"{body}x.{signature}"},
        )
        assert tampered.status_code == 400
        done = await browser.get(
            result.callback_url, headers={"Cookie": "vandamme_oauth_login=" + cookie}
        )
        assert done.status_code == 200
        replay = await browser.get(
            result.callback_url, headers={"Cookie": "vandamme_oauth_login=" + cookie}
        )
        assert replay.status_code == 400
        assert "already completed" in replay.text
        assert await logins["eve"].read_auth() is not None
