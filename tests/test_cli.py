"""The CLI in-process: arguments, exit codes and one-line reasons (no provider needed)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.storage.test_contract import LOGIN
from vandamme_oauth._cli import main
from vandamme_oauth.storage import FileSystemAuthStorage

if TYPE_CHECKING:
    from pathlib import Path


def test_status_of_an_empty_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status with no logins says so and exits 1."""
    assert main(["status", "--home", str(tmp_path)]) == 1
    assert "No logins stored" in capsys.readouterr().out


def test_token_without_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """token with nothing stored exits 1 with a one-line reason that says to log in."""
    assert main(["token", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "vandamme-oauth login" in err


def test_issuer_needs_client_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """login --issuer without --client-id is refused before any network traffic."""
    assert main(["login", "--issuer", "https://idp.example", "--home", str(tmp_path)]) == 1
    assert "--client-id" in capsys.readouterr().err


def test_plain_http_issuer_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-loopback http issuer is refused with a clear reason."""
    code = main(
        ["login", "--issuer", "http://idp.example", "--client-id", "c", "--home", str(tmp_path)]
    )
    assert code == 1
    assert "https" in capsys.readouterr().err


def test_status_shows_logins_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status lists each login with account and path, never a token; corrupt ones fail."""
    asyncio.run(FileSystemAuthStorage(tmp_path, "chatgpt").write_auth(LOGIN))
    (tmp_path / "broken.json").write_text("{")
    assert main(["status", "--home", str(tmp_path)]) == 1  # one login is unreadable
    out = capsys.readouterr().out
    assert "chatgpt" in out
    assert "acct (a@example.com)" in out
    assert "broken" in out
    assert "unreadable" in out
    assert '"AT"' not in out
    assert "RT" not in out


def test_logout_with_several_logins_asks_for_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """logout without a name refuses to guess when several logins exist."""
    asyncio.run(FileSystemAuthStorage(tmp_path, "a").write_auth(LOGIN))
    asyncio.run(FileSystemAuthStorage(tmp_path, "b").write_auth(LOGIN))
    assert main(["logout", "--home", str(tmp_path)]) == 1
    assert "several logins" in capsys.readouterr().err
    assert (tmp_path / "a.json").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands are argparse usage errors (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["fly"])
    assert caught.value.code == 2


def test_logout_clears_even_when_revocation_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Logout is best effort at the provider: an unreachable revocation endpoint is reported,
    and the local tokens are deleted anyway."""
    import json

    from vandamme_oauth import ProviderConfig

    provider = ProviderConfig(
        name="work",
        issuer="http://127.0.0.1:9",
        client_id="c",
        authorization_endpoint="http://127.0.0.1:9/authorize",
        token_endpoint="http://127.0.0.1:9/token",
        revocation_endpoint="http://127.0.0.1:9/revoke",
    )
    (tmp_path / "work.provider.json").write_text(json.dumps(provider.to_dict()))
    asyncio.run(FileSystemAuthStorage(tmp_path, "work").write_auth(LOGIN))
    assert main(["logout", "work", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "local tokens deleted" in out
    assert "revocation FAILED" in out
    assert not (tmp_path / "work.json").exists()
    assert not (tmp_path / "work.provider.json").exists()
