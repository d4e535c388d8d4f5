"""Logins that work everywhere, against the real provider: device code, paste-back,
form_post and a browser that reaches ``localhost`` over IPv6."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest

from tests.integration.conftest import pending_login, scripted_login
from tests.support.provider import RunningProvider
from tests.support.resource_server import ResourceServer
from tests.support.terminal import Terminal
from tests.support.user_agent import run_browser, run_device_browser
from vandamme_oauth import (
    DeviceCode,
    DeviceFlow,
    InMemoryAuthStorage,
    ProviderConfig,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
async def terminal_factory() -> AsyncIterator[list[Terminal]]:
    terminals: list[Terminal] = []
    yield terminals
    for terminal in terminals:
        terminal.close()


def cli(terminals: list[Terminal], *args: str) -> Terminal:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    env["DISPLAY"] = ":99"  # a desktop session, unless a test says otherwise
    terminal = Terminal([sys.executable, "-m", "vandamme_oauth", *args], env=env)
    terminals.append(terminal)
    return terminal


async def test_device_login_through_the_api(
    provider_config: ProviderConfig, oidc_provider: RunningProvider
) -> None:
    """RFC 8628 against the real provider: the user enters the code on another device."""
    entered = asyncio.Event()
    codes: asyncio.Queue[DeviceCode] = asyncio.Queue()

    async def sleep_until_entered(_: float) -> None:
        await entered.wait()  # poll only once the person has approved: no timing guesswork

    storage = InMemoryAuthStorage()
    before = oidc_provider.stats()["device_code"]
    async with DeviceFlow(
        provider_config, storage, on_code=codes.put_nowait, sleep=sleep_until_entered
    ) as flow:
        task = asyncio.create_task(flow.authenticate())
        code = await asyncio.wait_for(codes.get(), timeout=30)
        assert code.device_code not in repr(code)
        page = await run_device_browser(code.verification_uri, code.user_code)
        entered.set()
        auth = await task
    assert "success" in page.lower()
    assert auth.account_id == "alice"
    assert auth.refresh_token
    assert await storage.read_auth() == auth
    assert oidc_provider.stats()["device_code"] == before + 1


async def test_cli_device_login(
    oidc_provider: RunningProvider, tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    """`login --device` shows the URI and the code, and exits 0 once the tokens are stored."""
    term = cli(
        terminal_factory,
        "login",
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--device",
        "--home",
        str(tmp_path),
        "--name",
        "dev",
    )
    shown = await term.expect(r"open (\S+) on any device and enter the code:\s+(\S+)")
    # On a terminal the wait is one line, redrawn in place, with elapsed and remaining time.
    await term.expect(
        r"\r\x1b\[KWaiting for the sign-in on the other device: 0:0\d elapsed, \d+:\d\d left"
    )
    await run_device_browser(shown[1], shown[2])
    await term.expect(r"Logged in to dev as alice\.")
    assert await term.wait() == 0
    assert (tmp_path / "dev.json").exists()
    assert "\nWaiting" not in term.screen  # never a new line per update


async def test_cli_paste_back(
    oidc_provider: RunningProvider, tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    """The browser cannot reach us: the user pastes the final address; a wrong paste is
    refused with a reason and the prompt stays open."""
    term = cli(
        terminal_factory,
        "login",
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--paste",
        "--no-browser",
        "--home",
        str(tmp_path),
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--scope",
        "email",
    )
    url = (await term.expect(r"(http://127\.0\.0\.1:\d+/auth\?\S+)"))[1]
    await term.expect(r"paste it here")
    waiting = await term.expect(r"Waiting for the browser to come back to \S+ \(up to 300 s")
    assert term.screen.index(url) < waiting.start()  # the URL comes first
    result = await run_browser(url, follow_callback=False)  # the browser stops here
    refusals = [
        ("hello", "that is neither the address your browser ended on nor a code"),
        ("a code with spaces in it", "that is neither the address"),
        ("x" * 40, r"the provider did not accept that code \(invalid_grant\)"),
        (result.callback_url.replace("state=", "state=x"), "the callback.s state does not match"),
    ]
    for number, (text, reason) in enumerate(refusals, start=1):
        term.sendline(text)
        await term.expect(rf"(?s)(?:Not accepted: .*?){{{number}}}")
        assert re.search(rf"Not accepted: {reason}[^\n]*Paste the full address again:", term.screen)
    term.sendline(result.callback_url)  # the verifier survived the refused code
    await term.expect(r"Logged in to 127\.0\.0\.1-\d+ as alice@example\.test")
    assert await term.wait() == 0
    assert term.screen.count("Not accepted") == len(refusals)  # each said once
    assert "WARNING" not in term.screen


async def test_headless_session_prints_the_url_and_offers_alternatives(
    oidc_provider: RunningProvider, tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    """Over SSH the CLI says so, does not try a browser, and offers paste-back and --device;
    the loopback listener still wins if the browser can reach it."""
    term = Terminal(
        [
            sys.executable,
            "-m",
            "vandamme_oauth",
            "login",
            "--issuer",
            oidc_provider.issuer,
            "--client-id",
            oidc_provider.client_id,
            "--home",
            str(tmp_path),
        ],
        env={**os.environ, "SSH_CONNECTION": "10.1.1.1 5000 10.1.1.2 22", "DISPLAY": ":0"},
    )
    terminal_factory.append(term)
    await term.expect(r"This looks like an SSH session: not opening a browser")
    url = (await term.expect(r"(http://127\.0\.0\.1:\d+/auth\?\S+)"))[1]
    await term.expect(r"vandamme-oauth login --device")
    await run_browser(url)  # port forwarding works after all: the loopback callback wins
    await term.expect(r"Logged in to")
    assert await term.wait() == 0


async def test_paste_back_through_the_api_with_the_bare_code(
    provider_config: ProviderConfig,
) -> None:
    """The API's paste hook accepts the bare code too."""
    pasted: asyncio.Queue[str | None] = asyncio.Queue()
    storage = InMemoryAuthStorage()
    async with pending_login(provider_config, storage, paste=pasted.get) as (task, url):
        result = await run_browser(url, follow_callback=False)
        code = dict(p.split("=", 1) for p in urlsplit(result.callback_url).query.split("&"))
        await pasted.put(code["code"])
        auth = await task
    assert auth.account_id == "alice"
    assert await storage.read_auth() == auth


async def test_form_post_login(oidc_provider: RunningProvider) -> None:
    """response_mode=form_post end to end: the code arrives in a POST body, not the URL."""
    provider = await ProviderConfig.discover(
        oidc_provider.issuer,
        client_id=oidc_provider.client_id,
        scopes=["openid", "offline_access"],
        response_mode="form_post",
        name="fp",
    )
    storage = InMemoryAuthStorage()
    async with pending_login(provider, storage) as (task, url):
        assert "response_mode=form_post" in url
        result = await run_browser(url)
        auth = await task
    assert result.final_status == 200
    assert urlsplit(result.final_url).query.startswith("t=")  # the ticket; no code
    assert "code" not in result.final_url
    assert await storage.read_auth() == auth


async def test_localhost_redirect_reached_over_ipv6(provider_config: ProviderConfig) -> None:
    """A preset pinned to `localhost` listens on 127.0.0.1 and ::1: a browser that resolves
    localhost to ::1 still arrives. (On a machine without IPv6 loopback the same browser
    arrives over 127.0.0.1: the test runs either way, never skipped.)"""
    loopback = "[::1]" if ipv6_loopback() else "127.0.0.1"
    provider = provider_config.replace(redirect_host="localhost")
    storage = InMemoryAuthStorage()
    async with pending_login(provider, storage) as (task, url):
        result = await run_browser(url, follow_callback=False)
        parts = urlsplit(result.callback_url)
        assert parts.hostname == "localhost"
        via_ipv6 = urlunsplit(parts._replace(netloc=f"{loopback}:{parts.port}"))
        import httpx

        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(via_ipv6, follow_redirects=True)
        assert answer.status_code == 200
        auth = await task
    assert await storage.read_auth() == auth


async def test_missing_login_keeps_previous_logins_side_by_side(
    provider_config: ProviderConfig, tmp_path: Path
) -> None:
    """Several named logins live in one home; each is its own file, beside its profile."""
    from vandamme_oauth import FileSystemAuthStorage

    for name in ("work", "personal"):
        await scripted_login(
            provider_config.replace(name=name), FileSystemAuthStorage(tmp_path, name), login=name
        )
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "personal.json",
        "personal.provider.json",
        "work.json",
        "work.provider.json",
    ]


async def test_slow_down_from_a_loopback_device_server() -> None:
    """A loopback fake that answers slow_down once: the next polls wait 5 s longer, and
    polling stops with the tokens once approved."""
    from aiohttp import web

    answers = [
        web.json_response({"error": "slow_down"}, status=400),
        web.json_response({"error": "authorization_pending"}, status=400),
        web.json_response({"access_token": "AT", "refresh_token": "RT", "expires_in": 60}),
    ]
    polls: list[dict[str, str]] = []

    async def device(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "device_code": "DC",
                "user_code": "WXYZ",
                "verification_uri": f"{base}/activate",
                "interval": 1,
            }
        )

    async def token(request: web.Request) -> web.Response:
        polls.append({k: str(v) for k, v in (await request.post()).items()})
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/device", device)
    app.router.add_post("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    provider = ProviderConfig(
        name="fake",
        issuer=base,
        client_id="cid",
        authorization_endpoint=f"{base}/authorize",
        token_endpoint=f"{base}/token",
        device_authorization_endpoint=f"{base}/device",
    )
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(round(seconds, 3))

    try:
        async with DeviceFlow(provider, InMemoryAuthStorage(), sleep=record) as flow:
            auth = await flow.authenticate()
    finally:
        await runner.cleanup()
    assert waits == [1.2, 7.2, 7.2]
    assert auth.access_token == "AT"
    assert [p["device_code"] for p in polls] == ["DC", "DC", "DC"]


async def test_cli_paste_back_to_a_resource(
    oidc_provider: RunningProvider, tmp_path: Path, terminal_factory: list[Terminal]
) -> None:
    """`login --resource URL --paste --no-browser`: the pasted address finishes a login to
    the resource; its token is for that resource (the exchange named it too)."""
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        term = cli(
            terminal_factory,
            *("login", "--resource", resource.resource, "--name", "files"),
            *("--paste", "--no-browser", "--home", str(tmp_path)),
        )
        url = (await term.expect(r"(http://127\.0\.0\.1:\d+/auth\?\S+)"))[1]
        await term.expect(r"paste it here")
        result = await run_browser(url, follow_callback=False)
        term.sendline(result.callback_url)
        await term.expect(r"Logged in to files as alice")
        assert await term.wait() == 0
    stored = json.loads((tmp_path / "files.json").read_text())["tokens"]["access_token"]
    claims = jwt.decode(stored, options={"verify_signature": False})
    assert claims["aud"] == resource.resource
