"""Every ```python block of the README runs, against loopback stand-ins for the hosts it
names (the test provider, a loopback API, the test Redis), so the documentation cannot rot."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from aiohttp import web

from harness.redis_server import RedisServer
from tests.storage.test_codex import codex_file
from tests.support.provider import RunningProvider
from vandamme_oauth import AuthData, FileSystemAuthStorage, ProviderConfig, RedisAuthStorage
from vandamme_oauth.storage._base import store_login

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def runnable(block: str) -> str:
    """The block as a script; blocks with top-level await run inside asyncio.run()."""
    try:
        ast.parse(block)
        compile(block, "<readme>", "exec")
    except SyntaxError:
        body = textwrap.indent(block, "    ")
        return f"import asyncio\n\nasync def _block():\n{body}\n\nasyncio.run(_block())\n"
    return block


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_readme_block_runs(
    index: int, oidc_provider: RunningProvider, redis_server: RedisServer, tmp_path: Path
) -> None:
    """README python block number `index` runs to completion (exit code 0)."""
    block = BLOCKS[index]
    api = web.Application()

    async def ok(request: web.Request) -> web.Response:
        assert request.headers["Authorization"].startswith("Bearer ")
        return web.json_response({"models": []})

    api.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(api)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    for old, new in (
        ("https://idp.example.com", oidc_provider.issuer),
        ('"my-app"', f'"{oidc_provider.client_id}"'),
        ('"my-web-app"', f'"{oidc_provider.confidential_client_id("client_secret_basic")}"'),
        ("https://chatgpt.com", upstream),
        ("redis://redis.internal:6379/0", redis_server.url),
        ("https://app.example.com", "http://127.0.0.1:8123"),
    ):
        block = block.replace(old, new)

    now = time.time()
    valid = AuthData(
        access_token="AT-valid",
        refresh_token="RT",
        account_id="acct",
        expires_at=now + 86400,
        last_refresh=now,
    )
    await FileSystemAuthStorage(tmp_path / "vhome", "chatgpt").write_auth(valid)
    work = FileSystemAuthStorage(tmp_path / "vhome", "work")  # a login the CLI made
    provider = await ProviderConfig.discover(
        oidc_provider.issuer, client_id=oidc_provider.client_id, name="work"
    )
    await store_login(work, valid, provider.to_dict())
    redis_login = RedisAuthStorage.from_url(redis_server.url, key="vandamme:chatgpt")
    await redis_login.write_auth(valid)
    await redis_login.aclose()
    codex_file(tmp_path / "codex")

    script = tmp_path / "block.py"
    script.write_text(runnable(block))
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "VANDAMME_OAUTH_HOME": str(tmp_path / "vhome"),
        "CODEX_HOME": str(tmp_path / "codex"),
        "PYTHONPATH": f"{ROOT / 'tests' / 'support' / 'fake_browser'}:{ROOT}",
        "NO_PROXY": "*",
        "CLIENT_SECRET": oidc_provider.client_secret,
    }
    try:
        process = await asyncio_run(script, env)
    finally:
        await runner.cleanup()
    assert process.returncode == 0, f"block {index}:\n{block}\n{process.stderr}"


async def asyncio_run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_readme_has_blocks() -> None:
    """The README documents the API with code (and this test found it)."""
    assert len(BLOCKS) >= 6
    assert any("await manager.get_access_token()" in block for block in BLOCKS)
