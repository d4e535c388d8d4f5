"""The CLI driven as a user would, as a separate process, against the real provider."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest
from keyrings.alt.file import PlaintextKeyring

from tests.integration.conftest import scripted_login
from tests.integration.test_fleet import expire
from tests.support.user_agent import run_browser
from vandamme_oauth import (
    AuthData,
    FileSystemAuthStorage,
    ProviderConfig,
    ReauthenticationRequired,
    TokenClient,
)
from vandamme_oauth._profiles import load_provider

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def _spawn_cli(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
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
        env={**os.environ, "NO_PROXY": "*", **(env or {})},
    )


async def _cli(*args: str, home: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await _spawn_cli(*args, home=home, env=env)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _issuer_args(oidc_provider: RunningProvider) -> list[str]:
    return [
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
    ]


async def _cli_login(
    oidc_provider: RunningProvider, home: Path, *target: str, login: str = "alice"
) -> tuple[int, str, str]:
    """`login [TARGET...] --no-browser`, with the scripted browser signing in as ``login``
    (default target: the test provider, named "work")."""
    process = await _spawn_cli(
        "login",
        *(target or _issuer_args(oidc_provider)),
        "--no-browser",
        "--timeout",
        "60",
        home=home,
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
    waiting = ""  # notices before the waiting line (a registration) are kept with it
    while "Ctrl-C" not in waiting:
        line = (await asyncio.wait_for(process.stderr.readline(), timeout=60)).decode()
        assert line, f"the CLI exited before saying it waits: {waiting}"
        waiting += line
    assert "/auth/callback" in waiting
    await run_browser(url, login=login)
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
    assert out.startswith("work: valid\n")
    assert "  account:     alice@example.test (alice)" in out
    assert f"  issuer:      {oidc_provider.issuer}" in out
    assert "  expires:     in 9 min (" in out  # the provider's tokens live 10 minutes
    assert f"  storage:     {auth_file}" in out
    assert not any(secret in out for secret in secrets)

    code, out, err = await _cli("status", "--json", home=home)
    assert code == 0, err
    (entry,) = json.loads(out)["logins"]
    assert (entry["name"], entry["state"], entry["usable"]) == ("work", "valid", True)
    assert entry["email"] == "alice@example.test"
    assert sorted(entry["scopes"]) == ["email", "openid"]  # granted (as the provider says)
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
    # Nothing is stored before the code is exchanged (the flow then stores the provider
    # profile and the tokens, in that order): Ctrl-C now leaves no trace.
    assert sorted(p.name for p in home.iterdir()) == []
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == "vandamme-oauth: cancelled"
    assert sorted(p.name for p in home.iterdir()) == []


async def _refresh_is_refused(provider: ProviderConfig, auth: AuthData) -> bool:
    async with TokenClient(provider) as client:
        try:
            await client.refresh(auth)
        except ReauthenticationRequired:
            return True
    return False


async def test_a_failed_refresh_is_one_line_naming_the_login_command(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """The provider refuses the refresh token: `token` says so in one line ending with the
    exact command that logs in again; `status` cannot know yet, `status --check` finds out."""
    home = tmp_path / "home"
    code, _, err = await _cli_login(oidc_provider, home)
    assert code == 0, err
    storage = FileSystemAuthStorage(home, "work")
    provider = await load_provider(home, "work")
    assert provider is not None
    stored = await storage.read_auth()
    assert stored is not None
    async with TokenClient(provider) as client:
        assert await client.revoke(stored)  # e.g. the user signed out everywhere
    await expire(storage)

    code, out, err = await _cli("token", "work", home=home)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "vandamme-oauth: the provider rejected the refresh token (invalid_grant); "
        f"log in again with: vandamme-oauth login work --home {home}"
    ]

    code, out, err = await _cli("status", home=home)
    assert (code, err) == (0, "")
    assert out.startswith("work: expired (renewed on next use)\n")

    code, out, err = await _cli("status", "--check", home=home)
    assert (code, err) == (1, "")
    assert out.startswith(
        "work: refresh failed (the provider rejected the refresh token (invalid_grant))\n"
    )
    assert "  refreshable: no\n" in out
    assert f"  to fix:      vandamme-oauth login work --home {home}\n" in out
    code, out, _ = await _cli("status", "--check", "--json", home=home)
    (entry,) = json.loads(out)["logins"]
    assert (code, entry["state"], entry["usable"]) == (1, "refresh failed", False)


async def test_status_check_refreshes_a_login_that_needs_it(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`status --check` renews an expired login through the token manager, stores the
    rotated refresh token and reports it; a valid login is checked without a request."""
    home = tmp_path / "home"
    code, _, err = await _cli_login(oidc_provider, home)
    assert code == 0, err
    storage = FileSystemAuthStorage(home, "work")
    expired = await expire(storage)
    before = oidc_provider.stats()["refresh_token"]
    code, out, err = await _cli("status", "--check", home=home)
    assert (code, err) == (0, "")
    assert out.startswith("work: valid (checked: refreshed now)\n")
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.refresh_token not in (None, expired.refresh_token)
    assert oidc_provider.stats()["refresh_token"] == before + 1
    code, out, _ = await _cli("status", "--check", home=home)
    assert (code, out.splitlines()[0]) == (0, "work: valid (checked)")
    assert oidc_provider.stats()["refresh_token"] == before + 1


async def test_login_by_name_replaces_the_login_and_revokes_the_old_refresh_token(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login work` signs in again with the saved profile; the replaced login is announced
    and its refresh token revoked after the new one is stored, and the new login lives."""
    home = tmp_path / "home"
    code, _, err = await _cli_login(oidc_provider, home)
    assert code == 0, err
    storage = FileSystemAuthStorage(home, "work")
    old = await storage.read_auth()
    assert old is not None
    revocations = oidc_provider.stats()["revocation"]

    code, out, err = await _cli_login(oidc_provider, home, "work", login="bob")
    assert code == 0, err
    assert "Logged in to work as bob@example.test." in out
    assert err.splitlines()[-1] == (
        "Replaced the login of alice@example.test; its refresh token was revoked."
    )
    assert oidc_provider.stats()["revocation"] == revocations + 1
    new = await storage.read_auth()
    assert new is not None
    assert new.email == "bob@example.test"
    provider = await load_provider(home, "work")
    assert provider is not None
    assert sorted(provider.scopes) == ["email", "offline_access", "openid"]  # from the profile
    assert await _refresh_is_refused(provider, old)
    async with TokenClient(provider) as client:
        renewed = await client.refresh(new)
    assert renewed.email == "bob@example.test"

    # The same account again: nothing is revoked (at some providers that would end the
    # new login too); the replaced token is simply no longer stored.
    revocations = oidc_provider.stats()["revocation"]
    code, out, err = await _cli_login(oidc_provider, home, "work", login="bob")
    assert code == 0, err
    assert err.splitlines()[-1] == (
        "Replaced the earlier login of bob@example.test (same account: its token is dropped here)."
    )
    assert oidc_provider.stats()["revocation"] == revocations


async def test_a_login_made_from_code_is_usable_by_the_cli(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """OAuthFlow into a FileSystemAuthStorage home stores the provider profile with the
    tokens: `status`, `token` and `logout` work on it like on a CLI login."""
    home = tmp_path / "home"
    storage = FileSystemAuthStorage(home, "coded")
    login = await scripted_login(provider_config.replace(name="coded"), storage)
    assert (home / "coded.provider.json").stat().st_mode & 0o777 == 0o600
    code, out, err = await _cli("status", home=home)
    assert (code, err) == (0, ""), out
    assert out.startswith("coded: valid\n")
    code, out, err = await _cli("token", "coded", home=home)
    assert (code, out.strip(), err) == (0, login.auth.access_token, "")
    revocations = oidc_provider.stats()["revocation"]
    code, out, err = await _cli("logout", "coded", home=home)
    assert (code, err) == (0, "")
    assert "revoked at the provider" in out
    assert oidc_provider.stats()["revocation"] == revocations + 1
    assert sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock")) == []


async def test_an_unusable_keyring_is_announced_once_before_the_browser(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login --keyring` with a locked keyring: one notice, before the wait starts, and the
    login lands in the file it named; `token --keyring` then says it once more, once."""
    home = tmp_path / "home"
    locked = {"PYTHON_KEYRING_BACKEND": "tests.support.keyrings.LockedKeyring"}
    process = await _spawn_cli(
        "login", *_issuer_args(oidc_provider), "--keyring", "--no-browser", home=home, env=locked
    )
    assert process.stdout is not None
    assert process.stderr is not None
    while not (line := (await asyncio.wait_for(process.stdout.readline(), 60)).decode()).startswith(
        "  http"
    ):
        assert line, "the CLI exited before printing the URL"
    notice = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
    assert notice == (
        "The OS keyring is unusable (KeyringLocked: the collection is locked); "
        f"using {home / 'work.json'} instead.\n"
    )
    waiting = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
    assert waiting.startswith("Waiting for the browser")
    await run_browser(line.strip())
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err
    assert f"Tokens stored in {home / 'work.json'}." in out.decode()
    assert "keyring" not in err.decode()  # said once
    code, out_text, err_text = await _cli("token", "work", "--keyring", home=home, env=locked)
    assert code == 0
    assert (
        out_text.strip() == json.loads((home / "work.json").read_text())["tokens"]["access_token"]
    )
    assert err_text.count("The OS keyring is unusable") == 1
    assert len(err_text.splitlines()) == 1


async def test_an_unreachable_issuer_is_one_line(tmp_path: Path, unused_tcp_port: int) -> None:
    """An issuer nobody listens at: exactly one line on stderr, saying so once (not per
    well-known URL, and without the retry library's own warning for the retry it made)."""
    issuer = f"http://127.0.0.1:{unused_tcp_port}"
    code, out, err = await _cli(
        "login", "--issuer", issuer, "--client-id", "c", "--no-browser", home=tmp_path
    )
    assert (code, out) == (1, "")
    assert err == (
        f"vandamme-oauth: cannot reach {issuer} (ConnectError: All connection attempts "
        "failed); check the issuer URL and your network\n"
    )


@pytest.mark.parametrize("in_keyring", [False, True], ids=["file", "keyring"])
async def test_a_client_secret_from_stdin_is_kept_for_later_commands(
    oidc_provider: RunningProvider,
    tmp_path: Path,
    in_keyring: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`login --issuer ... --client-id CONFIDENTIAL --client-secret-stdin`: the secret is
    read from standard input, never printed, kept in the OS keyring when there is one (else
    in the 0600 registration file); `logout` later revokes with it (the provider refuses
    revocation without the client's secret) and forgets it."""
    home = tmp_path / "home"
    env = {**os.environ, "NO_PROXY": "*"}
    if in_keyring:  # a keyring the user chose, in a folder of this test
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
        env.update(XDG_DATA_HOME=str(tmp_path / "data"))
        env.update(PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring")
    client_id = oidc_provider.confidential_client_id("client_secret_basic")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vandamme_oauth", "login",
        "--issuer", oidc_provider.issuer, "--client-id", client_id, "--client-secret-stdin",
        "--name", "conf", "--no-browser", "--timeout", "60", "--home", str(home),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(oidc_provider.client_secret.encode() + b"\n")
    await process.stdin.drain()
    url = ""
    while not url:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, "the CLI exited before printing a URL"
        url = line.strip() if line.strip().startswith("http") else ""
    await run_browser(url, login="erin")
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert oidc_provider.client_secret not in out.decode() + err.decode()
    assert "keyring" not in err.decode()  # a keyring there or not: nothing to say
    kept = home / "conf.registration"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert oidc_provider.client_secret not in (home / "conf.provider.json").read_text()
    keyring = PlaintextKeyring()
    in_file = oidc_provider.client_secret in kept.read_text()
    assert in_file is not in_keyring
    if in_keyring:
        entry = json.loads(keyring.get_password("vandamme-oauth", "conf:client") or "{}")
        assert entry == {"client_secret": oidc_provider.client_secret}
    code, out_text, err_text = await _cli("status", "conf", home=home, env=env)
    assert code == 0, err_text
    assert oidc_provider.client_secret not in out_text
    before = oidc_provider.stats()["revocation"]
    code, out_text, err_text = await _cli("logout", "conf", home=home, env=env)
    assert code == 0, err_text
    assert "revoked at the provider" in out_text
    assert oidc_provider.stats()["revocation"] == before + 1
    assert not kept.exists()
    if in_keyring:
        assert keyring.get_password("vandamme-oauth", "conf:client") is None
