"""Every example runs against the test provider and loopback servers."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiohttp import web

from tests.integration.conftest import scripted_login
from tests.support.user_agent import run_browser
from vandamme_oauth import InMemoryAuthStorage, ProviderConfig, TokenManager

if TYPE_CHECKING:
    from types import ModuleType

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_interactive_login_example(oidc_provider: RunningProvider, tmp_path: Path) -> None:
    """examples/interactive_login.py logs in to the provider and obtains a token."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "interactive_login.py"),
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--home",
        str(tmp_path),
        "--no-browser",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    url = ""
    while not url:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, "the example exited before printing a URL"
        if line.startswith("http"):
            url = line.strip()
    await run_browser(url)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert "Signed in as alice@example.test" in out.decode()
    assert "An access token is ready" in out.decode()


class Upstream:
    """A loopback API that records the auth headers and rejects the first token once."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.reject: str | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.seen.append((auth, request.headers.get("ChatGPT-Account-ID")))
        if self.reject is not None and auth == f"Bearer {self.reject}":
            return web.Response(status=401)
        body = await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(3):
            await response.write(f"chunk{i}:{len(body)};".encode())
        await response.write_eof()
        return response


async def test_proxy_token_example_adds_headers_and_survives_a_401(
    provider_config: ProviderConfig,
) -> None:
    """The proxy forwards with Bearer + account headers, and a 401 costs one refresh + retry."""
    proxy = load_example("proxy_token")
    upstream = Upstream()
    up_app = web.Application()
    up_app.router.add_route("*", "/{tail:.*}", upstream.handle)
    up_runner = web.AppRunner(up_app)
    await up_runner.setup()
    up_site = web.TCPSite(up_runner, "127.0.0.1", 0)
    await up_site.start()
    up_port = up_runner.addresses[0][1]

    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    async with TokenManager(provider_config, storage) as manager:
        runner = web.AppRunner(proxy.make_app(manager, f"http://127.0.0.1:{up_port}/api"))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                first = await client.post(
                    f"http://127.0.0.1:{port}/codex/responses?x=1", content=b"hello"
                )
                upstream.reject = login.auth.access_token
                second = await client.post(
                    f"http://127.0.0.1:{port}/codex/responses", content=b"again"
                )
        finally:
            await runner.cleanup()
            await up_runner.cleanup()
    assert first.status_code == 200
    assert first.text == "chunk0:5;chunk1:5;chunk2:5;"
    assert second.status_code == 200
    assert upstream.seen[0] == (f"Bearer {login.auth.access_token}", "alice")
    assert upstream.seen[1][0] == f"Bearer {login.auth.access_token}"  # rejected once
    assert upstream.seen[2][0] != f"Bearer {login.auth.access_token}"  # refreshed, retried
    assert len(upstream.seen) == 3


async def _serve_upstream(upstream: Upstream) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_chatgpt_proxy_example_streams_and_retries(provider_config: ProviderConfig) -> None:
    """examples/chatgpt_proxy.py: headers added, a 16 MiB upload streamed through, the
    streamed answer relayed, and a 401 on a small body retried once after one refresh."""
    proxy = load_example("chatgpt_proxy")
    upstream = Upstream()
    up_runner, up_url = await _serve_upstream(upstream)
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    big = b"q" * (16 * 1024 * 1024)
    try:
        async with TokenManager(provider_config, storage) as manager:
            runner = web.AppRunner(proxy.make_app(manager, f"{up_url}/backend-api"))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=60) as client:

                    async def chunks() -> AsyncIterator[bytes]:
                        for i in range(0, len(big), 1 << 20):
                            yield big[i : i + (1 << 20)]

                    large = await client.post(f"{base}/codex/responses", content=chunks())
                    upstream.reject = login.auth.access_token
                    small = await client.post(f"{base}/codex/responses", content=b"again")
            finally:
                await runner.cleanup()
    finally:
        await up_runner.cleanup()
    assert large.status_code == 200
    assert large.text == f"chunk0:{len(big)};chunk1:{len(big)};chunk2:{len(big)};"
    assert small.status_code == 200
    assert upstream.seen[0] == (f"Bearer {login.auth.access_token}", None)
    assert upstream.seen[1][0] == f"Bearer {login.auth.access_token}"  # refused once
    assert upstream.seen[2][0] not in (None, f"Bearer {login.auth.access_token}")
    assert len(upstream.seen) == 3


async def test_client_examples(provider_config: ProviderConfig) -> None:
    """examples/httpx_client.py and examples/aiohttp_client.py fetch with the token."""
    upstream = Upstream()
    up_runner, up_url = await _serve_upstream(upstream)
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    try:
        async with TokenManager(provider_config, storage) as manager:
            response = await load_example("httpx_client").fetch(f"{up_url}/a", manager)
            status, text = await load_example("aiohttp_client").fetch(f"{up_url}/b", manager)
    finally:
        await up_runner.cleanup()
    assert response.status_code == 200
    assert status == 200
    assert text.startswith("chunk0")
    assert upstream.seen == [(f"Bearer {login.auth.access_token}", None)] * 2
