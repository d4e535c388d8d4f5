"""A real browser (headless Chromium, driven by Playwright) through the whole login: our
authorization URL, the provider's login and consent pages, the redirect to our loopback
callback, and our success page. Run by `scripts/test` (nox session "browser")."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from playwright.async_api import Browser, Route, async_playwright

from tests.integration.conftest import pending_login
from vandamme_oauth import FileSystemAuthStorage, ProviderConfig

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Chromium is required for the browser test: install Debian's 'chromium' package "
            "(scripts/test does this when it runs as root)"
        )
    return found


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def loopback_only(route: Route) -> None:
    """This machine has no network: anything but loopback (web fonts...) is refused now."""
    host = urlsplit(route.request.url).hostname
    if host in ("127.0.0.1", "localhost", "::1"):
        await route.continue_()
    else:
        await route.abort()


@contextlib.asynccontextmanager
async def hostile_page(callback_port: int) -> AsyncIterator[str]:
    """A page on another site (localhost, another port) whose image asks our loopback
    server to /cancel the login, as any web page the user has open could."""
    html = f'<!doctype html><img src="http://127.0.0.1:{callback_port}/cancel">'

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://localhost:{site.port}/"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("response_mode", [None, "form_post"], ids=["redirect", "form_post"])
async def test_login_in_a_real_browser(
    chromium: Browser,
    provider_config: ProviderConfig,
    tmp_path: Path,
    response_mode: Literal["form_post"] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Chromium completes the login, through a top-level redirect or a form_post; a hostile
    page's request to /cancel on the way is refused; our success page says so and no secret
    is in its URL."""
    caplog.set_level(logging.WARNING, "vandamme_oauth")
    provider_config = provider_config.replace(response_mode=response_mode)
    storage = FileSystemAuthStorage(tmp_path, provider_config.name)
    context = await chromium.new_context()
    page = await context.new_page()
    await page.route("**/*", loopback_only)
    async with pending_login(provider_config, storage) as (task, url):
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        async with hostile_page(urlsplit(redirect).port or 0) as evil:
            await page.goto(evil)  # waits for the image's request to end
        assert "a /cancel sent by a web page was refused; still waiting" in caplog.messages
        await page.goto(url)
        await page.fill('input[name="login"]', "alice")
        await page.fill('input[name="password"]', "any-password")
        await page.click('button[type="submit"]')
        await page.wait_for_selector("text=Continue")
        await page.click('button[type="submit"]')
        await page.wait_for_url("**/success?t=*")
        auth = await task
        text = await page.inner_text("body")
    await context.close()

    assert "You are signed in" in text
    final = urlsplit(page.url)
    assert final.path == "/success"
    assert final.query.startswith("t=")  # the success ticket; no code
    assert "code" not in final.query
    assert final.hostname == "127.0.0.1"
    stored = await storage.read_auth()
    assert stored == auth
    for secret in (auth.access_token, auth.refresh_token or "", auth.id_token or ""):
        assert secret not in page.url
        assert secret not in text
