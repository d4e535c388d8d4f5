"""Every example runs through the command line it documents, against the test provider
and loopback servers: any stored login works, a missing login or argument is one line,
Ctrl-C ends quietly."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import httpx
import pytest
from aiohttp import web

from tests.integration.conftest import scripted_login
from tests.support.interpreters import python_without
from tests.support.user_agent import run_browser
from vandamme_oauth import FileSystemAuthStorage, ProviderConfig

if TYPE_CHECKING:
    from types import ModuleType

    from tests.integration.conftest import Login
    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def start(
    *argv: str, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> asyncio.subprocess.Process:
    """Run a documented command line from the repository's root, output piped."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env={**os.environ, "NO_PROXY": "*", **(env or {})},
        pass_fds=pass_fds,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def example(name: str, *args: str) -> asyncio.subprocess.Process:
    return await start(sys.executable, f"examples/{name}.py", *args)


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def line_starting(process: asyncio.subprocess.Process, prefix: str) -> str:
    """The first line of standard output that starts with ``prefix``."""
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, f"the example exited before printing {prefix!r}"
        if line.startswith(prefix):
            return line.strip()


async def interrupt(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C: the example ends with 130 and says nothing (no traceback)."""
    process.send_signal(signal.SIGINT)
    code, _, err = await finish(process)
    assert (code, err) == (130, "")


async def stored_login(provider: ProviderConfig, home: Path, name: str = "work") -> Login:
    """A login made from code into ``home`` (the examples find it by name)."""
    return await scripted_login(provider.replace(name=name), FileSystemAuthStorage(home, name))


async def test_interactive_login_example(oidc_provider: RunningProvider, tmp_path: Path) -> None:
    """examples/interactive_login.py logs in to the provider and obtains a token."""
    process = await example("interactive_login", *_login_args(oidc_provider, tmp_path))
    url = await line_starting(process, "http")
    await run_browser(url)
    code, out, err = await finish(process)
    assert code == 0, err
    assert "Signed in as alice@example.test" in out
    assert "An access token is ready" in out


def _login_args(oidc_provider: RunningProvider, home: Path) -> list[str]:
    return [
        *("--issuer", oidc_provider.issuer, "--client-id", oidc_provider.client_id),
        *("--home", str(home), "--no-browser", "--timeout", "60"),
    ]


async def test_interactive_login_example_ends_quietly_on_ctrl_c(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """Ctrl-C while the login waits for the browser: exit 130, no traceback, nothing stored."""
    process = await example("interactive_login", *_login_args(oidc_provider, tmp_path))
    await line_starting(process, "http")
    await interrupt(process)
    assert list(tmp_path.iterdir()) == []


class Upstream:
    """A loopback API that records the auth headers, rejects one token on demand, and
    answers gzip-compressed on /gzip when the request accepts it."""

    PAYLOAD = b"compressible " * 1000

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.accept_encoding: list[str | None] = []
        self.reject: str | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.seen.append((auth, request.headers.get("ChatGPT-Account-ID")))
        self.accept_encoding.append(request.headers.get("Accept-Encoding"))
        if self.reject is not None and auth == f"Bearer {self.reject}":
            return web.Response(status=401)
        if request.path.endswith("/limited"):
            return web.json_response(
                {"error": {"message": "usage limit reached", "resets_in_seconds": 90}},
                status=429,
            )
        if request.path.endswith("/gzip"):
            if "gzip" in request.headers.get("Accept-Encoding", ""):
                body = gzip.compress(self.PAYLOAD)
                return web.Response(body=body, headers={"Content-Encoding": "gzip"})
            return web.Response(body=self.PAYLOAD)
        body = await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(3):
            await response.write(f"chunk{i}:{len(body)};".encode())
        await response.write_eof()
        return response


async def _serve_upstream(upstream: Upstream) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    api = Upstream()
    runner, url = await _serve_upstream(api)
    yield api, url
    await runner.cleanup()


async def test_proxy_token_example_adds_the_token_and_survives_a_401(
    provider_config: ProviderConfig, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    """`proxy_token.py UPSTREAM --login work`: Bearer token on every request (no ChatGPT
    header for another provider); a 401 costs one refresh and one retry."""
    api, up_url = upstream
    login = await stored_login(provider_config, tmp_path)
    proxy = await example(
        "proxy_token", f"{up_url}/api", "--port", "0", "--login", "work", "--home", str(tmp_path)
    )
    base = (await line_starting(proxy, "Proxying ")).split()[1]
    async with httpx.AsyncClient(trust_env=False) as client:
        first = await client.post(f"{base}/codex/responses?x=1", content=b"hello")
        api.reject = login.auth.access_token
        second = await client.post(f"{base}/codex/responses", content=b"again")
    await interrupt(proxy)
    assert first.status_code == 200
    assert first.text == "chunk0:5;chunk1:5;chunk2:5;"
    assert second.status_code == 200
    assert api.seen[0] == (f"Bearer {login.auth.access_token}", None)
    assert api.seen[1][0] == f"Bearer {login.auth.access_token}"  # rejected once
    assert api.seen[2][0] != f"Bearer {login.auth.access_token}"  # refreshed, retried
    assert len(api.seen) == 3


async def test_chatgpt_proxy_example_streams_retries_and_relays_encodings(
    provider_config: ProviderConfig, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    """`chatgpt_proxy.py --upstream URL --login work`: a 16 MiB upload streamed through, the
    streamed answer relayed, a 401 on a small body retried once after one refresh; a
    compressed answer reaches a client that does not decompress as the compressed bytes
    with their Content-Encoding, and a client that accepts no encoding gets plain bytes; a
    usage limit reaches the client with Retry-After."""
    api, up_url = upstream
    login = await stored_login(provider_config, tmp_path)
    proxy = await example(
        "chatgpt_proxy",
        *("--upstream", f"{up_url}/backend-api", "--port", "0"),
        *("--login", "work", "--home", str(tmp_path)),
    )
    base = (await line_starting(proxy, "Proxying ")).split()[1]
    big = b"q" * (16 * 1024 * 1024)
    async with httpx.AsyncClient(trust_env=False, timeout=60) as client:

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 1 << 20):
                yield big[i : i + (1 << 20)]

        limited = await client.post(f"{base}/codex/responses/limited", content=b"{}")
        large = await client.post(f"{base}/codex/responses", content=chunks())
        api.reject = login.auth.access_token
        small = await client.post(f"{base}/codex/responses", content=b"again")
    async with aiohttp.ClientSession(auto_decompress=False) as raw_client:
        async with raw_client.get(
            f"{base}/gzip", headers={"Accept-Encoding": "gzip"}
        ) as compressed:
            compressed_body = await compressed.read()
            compressed_encoding = compressed.headers.get("Content-Encoding")
        async with raw_client.get(f"{base}/gzip", skip_auto_headers=["Accept-Encoding"]) as plain:
            plain_body = await plain.read()
            plain_encoding = plain.headers.get("Content-Encoding")
    await interrupt(proxy)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] in ("89", "90")  # when the limit resets
    assert limited.json()["error"]["message"] == "usage limit reached"
    assert large.status_code == 200
    assert large.text == f"chunk0:{len(big)};chunk1:{len(big)};chunk2:{len(big)};"
    assert small.status_code == 200
    assert api.seen[1] == (f"Bearer {login.auth.access_token}", None)
    assert api.seen[2][0] == f"Bearer {login.auth.access_token}"  # refused once
    assert api.seen[3][0] not in (None, f"Bearer {login.auth.access_token}")
    assert compressed_encoding == "gzip"
    assert gzip.decompress(compressed_body) == Upstream.PAYLOAD
    assert (plain_encoding, plain_body) == (None, Upstream.PAYLOAD)
    assert api.accept_encoding[-2:] == ["gzip", "identity"]


@pytest.mark.parametrize("name", ["httpx_client", "aiohttp_client"])
async def test_client_examples_with_a_stored_login_or_an_issuer(
    name: str,
    oidc_provider: RunningProvider,
    provider_config: ProviderConfig,
    tmp_path: Path,
    upstream: tuple[Upstream, str],
) -> None:
    """`NAME.py URL --login work` and `NAME.py URL --issuer ... --client-id ...` fetch with
    the stored login's token."""
    api, up_url = upstream
    work = await stored_login(provider_config, tmp_path)
    code, out, err = await finish(
        await example(name, f"{up_url}/a", "--login", "work", "--home", str(tmp_path))
    )
    assert (code, err) == (0, ""), err
    assert out.startswith("200 chunk0:0;")
    by_issuer = await scripted_login(
        provider_config.replace(name="127.0.0.1-" + oidc_provider.issuer.rsplit(":", 1)[1]),
        FileSystemAuthStorage(tmp_path, "127.0.0.1-" + oidc_provider.issuer.rsplit(":", 1)[1]),
        login="bob",
    )
    code, out, err = await finish(
        await example(
            name,
            f"{up_url}/b",
            *("--issuer", oidc_provider.issuer, "--client-id", oidc_provider.client_id),
            *("--home", str(tmp_path)),
        )
    )
    assert (code, err) == (0, ""), err
    assert api.seen == [
        (f"Bearer {work.auth.access_token}", None),
        (f"Bearer {by_issuer.auth.access_token}", None),
    ]


@pytest.mark.parametrize("name", ["httpx_client", "aiohttp_client", "proxy_token", "chatgpt_proxy"])
async def test_examples_say_in_one_line_that_no_login_is_stored(name: str, tmp_path: Path) -> None:
    """No such login: exit 1 and one line naming the command that makes one."""
    args = ["http://127.0.0.1:9/x"] if name.endswith("client") else ["--port", "0"]
    code, out, err = await finish(
        await example(name, *args, "--login", "nobody", "--home", str(tmp_path))
    )
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{name}: no login named 'nobody' in {tmp_path}; log in first: "
        "vandamme-oauth login --issuer URL --client-id ID --name nobody"
    ]


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("httpx_client", "url"),
        ("aiohttp_client", "url"),
        ("aiohttp_webapp", "--issuer"),
    ],
)
async def test_examples_say_in_one_line_that_an_argument_is_missing(
    name: str, missing: str
) -> None:
    """A missing argument: argparse's usage and one error line, exit 2, no traceback."""
    code, out, err = await finish(await example(name))
    assert (code, out) == (2, "")
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert "the following arguments are required: " in error
    assert missing in error
    assert "Traceback" not in err


async def test_aiohttp_webapp_example_signs_a_user_in(oidc_provider: RunningProvider) -> None:
    """`aiohttp_webapp.py --issuer ... --client-id ... --port 0` serves /login; the user
    signs in; Ctrl-C ends it quietly."""
    app = await example(
        "aiohttp_webapp",
        *("--issuer", oidc_provider.issuer, "--client-id", oidc_provider.client_id),
        *("--port", "0"),
    )
    start_url = (await line_starting(app, "Open ")).split()[1]
    async with httpx.AsyncClient(trust_env=False, timeout=30) as browser:
        begin = await browser.get(start_url)
        assert begin.status_code == 302
        result = await run_browser(begin.headers["location"], login="alice", client=browser)
    assert (result.final_status, result.final_text) == (
        200,
        "Signed in alice as alice.",
    )
    await interrupt(app)


async def test_starlette_webapp_example_runs_with_its_documented_command(
    oidc_provider: RunningProvider,
) -> None:
    """`ISSUER=... CLIENT_ID=... uvicorn examples.starlette_webapp:app` (here on a socket
    we opened, `--fd`) discovers the provider and signs a user in."""
    sock = socket.create_server(("127.0.0.1", 0))  # listening: requests queue until served
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {"ISSUER": oidc_provider.issuer, "CLIENT_ID": oidc_provider.client_id, "BASE_URL": base}
    server = await start(
        sys.executable,
        *("-m", "uvicorn", "examples.starlette_webapp:app", "--fd", str(sock.fileno())),
        "--log-level=warning",
        env=env,
        pass_fds=(sock.fileno(),),
    )
    sock.close()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as browser:
            begin = await browser.get(f"{base}/login", params={"user": "carol"})
            assert begin.status_code == 302
            result = await run_browser(begin.headers["location"], login="carol", client=browser)
        assert (result.final_status, result.final_text) == (
            200,
            "Signed in carol as carol.",
        )
    finally:
        server.send_signal(signal.SIGINT)
        code, _, err = await finish(server)
    assert code == 0, err


async def test_starlette_webapp_example_says_which_settings_are_missing() -> None:
    """Without ISSUER and CLIENT_ID the documented command ends with one line saying so."""
    env = {k: v for k, v in os.environ.items() if k not in ("ISSUER", "CLIENT_ID")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "uvicorn", "examples.starlette_webapp:app", "--port", "0"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out, err = await finish(process)
    assert (code, out) == (1, "")
    assert err.splitlines() == ["starlette_webapp: set ISSUER and CLIENT_ID (see the docstring)"]


async def test_starlette_webapp_example_run_as_a_script_says_which_settings_are_missing() -> None:
    """`python examples/starlette_webapp.py` without ISSUER and CLIENT_ID: the same line."""
    env = {k: v for k, v in os.environ.items() if k not in ("ISSUER", "CLIENT_ID")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "starlette_webapp.py"),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out, err = await finish(process)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "starlette_webapp: set ISSUER and CLIENT_ID (see the docstring)"


async def test_starlette_webapp_example_without_starlette_names_the_install(
    tmp_path: Path,
) -> None:
    """Without the starlette extra, the example ends with one line naming the pip install
    that fixes it, not a traceback."""
    script = EXAMPLES / "starlette_webapp.py"
    code_line = f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"
    process = await asyncio.create_subprocess_exec(
        *python_without(tmp_path, "starlette"),
        code_line,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    code, out, err = await finish(process)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "starlette_webapp needs Starlette: pip install 'vandamme-oauth[starlette]' uvicorn"
    ]


async def test_chatgpt_proxy_example_serves_prometheus_metrics(
    provider_config: ProviderConfig, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    """With the Prometheus exporter installed, `GET /metrics` shows the library's metrics:
    the manager by state, and the refresh a rejected token caused, by outcome."""
    api, up_url = upstream
    login = await stored_login(provider_config, tmp_path)
    proxy = await example(
        "chatgpt_proxy",
        *("--upstream", f"{up_url}/backend-api", "--port", "0"),
        *("--login", "work", "--home", str(tmp_path)),
    )
    base = (await line_starting(proxy, "Proxying ")).split()[1]
    async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
        api.reject = login.auth.access_token
        assert (await client.post(f"{base}/codex/responses", content=b"{}")).status_code == 200
        metrics = await client.get(f"{base}/metrics")
    await interrupt(proxy)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert any(
        line.startswith("vandamme_oauth_managers")
        and 'vandamme_oauth_manager_state="fresh"' in line
        for line in lines
    ), metrics.text
    assert any(
        line.startswith("vandamme_oauth_refreshes") and 'vandamme_oauth_outcome="success"' in line
        for line in lines
    ), metrics.text
