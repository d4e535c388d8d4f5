"""The CLI driven as a user would, as a separate process, against the real provider."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_fleet import expire
from tests.support.user_agent import run_browser
from vandamme_oauth import FileSystemAuthStorage

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def _spawn_cli(*args: str, home: Path) -> asyncio.subprocess.Process:
    """Start `python -m vandamme_oauth ARGS --home HOME` with its output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vandamme_oauth",
        *args,
        "--home",
        str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "*"},
    )


async def _cli(*args: str, home: Path) -> tuple[int, str, str]:
    process = await _spawn_cli(*args, home=home)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _cli_login(oidc_provider: RunningProvider, home: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vandamme_oauth",
        "login",
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--scope",
        "email",
        "--name",
        "work",
        "--no-browser",
        "--timeout",
        "60",
        "--home",
        str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    seen: list[str] = []
    url = ""
    while not url:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, f"the CLI exited before printing a URL: {seen}"
        seen.append(line)
        if line.strip().startswith("http"):
            url = line.strip()
    waiting = (await asyncio.wait_for(process.stderr.readline(), timeout=60)).decode()
    assert "Ctrl-C" in waiting
    assert "/auth/callback" in waiting
    await run_browser(url)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, "".join(seen) + out.decode(), waiting + err.decode()


async def test_cli_login_status_token_logout(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """login --no-browser, status, token and logout work end to end, with exit code 0."""
    home = tmp_path / "home"
    code, out, err = await _cli_login(oidc_provider, home)
    assert code == 0, err
    assert "Open this URL in a browser" in out
    assert "Logged in to work as alice@example.test" in out
    auth_file = home / "work.json"
    assert auth_file.stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    stored = json.loads(auth_file.read_text())
    secrets = [v for v in stored["tokens"].values() if v]

    code, out, err = await _cli("status", home=home)
    assert code == 0, err
    assert "work" in out
    assert "alice" in out
    assert str(auth_file) in out
    assert not any(secret in out for secret in secrets)

    code, out, err = await _cli("token", "work", home=home)
    assert code == 0, err
    assert out.strip() == stored["tokens"]["access_token"]

    before = oidc_provider.stats()["revocation"]
    code, out, err = await _cli("logout", home=home)
    assert code == 0, err
    assert "revoked at the provider" in out
    assert oidc_provider.stats()["revocation"] == before + 1
    assert not auth_file.exists()

    code, out, err = await _cli("token", "work", home=home)
    assert code == 1
    assert err.startswith("vandamme-oauth: ")
    assert len(err.strip().splitlines()) == 1


async def test_ctrl_c_during_token_keeps_the_rotated_refresh_token(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """Ctrl-C while `token` waits for a refresh that the provider has already processed:
    the CLI stores the answer before it exits (130, one line), so the login survives."""
    home = tmp_path / "home"
    code, _, err = await _cli_login(oidc_provider, home)
    assert code == 0, err
    storage = FileSystemAuthStorage(home, "work")
    expired = await expire(storage)
    before = oidc_provider.stats()
    oidc_provider.set_token_latency(0, after_processing_ms=1500)
    try:
        process = await _spawn_cli("token", "work", home=home)
        # The provider has rotated the refresh token; its answer is still on the way.
        await asyncio.to_thread(
            oidc_provider.wait_for, "token_requests_processed", before["token_requests_processed"]
        )
        process.send_signal(signal.SIGINT)
        out, err_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        oidc_provider.set_token_latency(0)
    assert process.returncode == 130
    assert err_bytes.decode().strip() == "vandamme-oauth: cancelled"
    assert out == b""
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.refresh_token not in (None, expired.refresh_token)
    code, out_text, err = await _cli("token", "work", home=home)
    assert code == 0, err
    assert out_text.strip() == stored.access_token
    after = oidc_provider.stats()
    assert after["refresh_token"] == before["refresh_token"] + 1
    assert after["token_errors"] == before["token_errors"]


async def test_a_home_that_is_a_file_fails_before_the_browser_opens(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login --home FILE` says what is wrong in one line, before any URL is shown, and
    exchanges nothing."""
    home = tmp_path / "not-a-folder"
    home.write_text("")
    before = oidc_provider.stats()["authorization_code"]
    code, out, err = await _cli(
        "login",
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--no-browser",
        home=home,
    )
    assert code == 1
    assert "http" not in out
    assert err.strip().splitlines() == [
        f"vandamme-oauth: {home} is not a folder; pick another with --home or VANDAMME_OAUTH_HOME"
    ]
    assert oidc_provider.stats()["authorization_code"] == before


async def test_an_abandoned_login_leaves_no_half_login(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """The provider profile is written before the browser opens (so tokens never exist
    without it); Ctrl-C while waiting removes it again: nothing half-made remains."""
    home = tmp_path / "home"
    process = await _spawn_cli(
        "login",
        "--issuer",
        oidc_provider.issuer,
        "--client-id",
        oidc_provider.client_id,
        "--name",
        "work",
        "--no-browser",
        home=home,
    )
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line, "the CLI exited before printing the URL"
        if line.strip().startswith(b"http"):
            break
    # The profile is saved before any token can be: a login is never tokens alone.
    assert (home / "work.provider.json").is_file()
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, err
    assert sorted(p.name for p in home.iterdir()) == []
