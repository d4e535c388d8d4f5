"""The CLI in-process: arguments, exit codes and one-line reasons (no provider needed)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import pytest
import respx

from tests.storage.test_contract import LOGIN, PROVIDER
from tests.test_jwt_claims import make_jwt
from vandamme_oauth import _cli_login
from vandamme_oauth._cli import main
from vandamme_oauth._cli_status import human_duration
from vandamme_oauth.storage import FileSystemAuthStorage

if TYPE_CHECKING:
    from pathlib import Path

    from vandamme_oauth import AuthData


def test_status_of_an_empty_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status with no logins says so and exits 1."""
    assert main(["status", "--home", str(tmp_path)]) == 1
    assert "No logins stored" in capsys.readouterr().out


def test_token_without_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """token with nothing stored exits 1 with a one-line reason that says to log in; for a
    named login that does not exist, the one command that creates it, with the --home
    given (not also `login NAME`, which needs a saved profile)."""
    assert main(["token", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "vandamme-oauth login" in err
    assert main(["token", "work", "--home", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"vandamme-oauth: no login named 'work' in {tmp_path} (no work.provider.json); "
        "create it with: vandamme-oauth login --issuer URL --client-id ID --name work "
        f"--home {tmp_path}\n"
    )


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["login", "--issuer", "https://idp.example"], "--issuer needs --client-id"),
        (["login", "--client-id", "c"], "--client-id needs --issuer or --resource"),
        (
            ["login", "--resource", "https://mcp.example/mcp", "--issuer", "https://i"],
            "--resource finds its own issuer",
        ),
        (["login", "work", "--resource", "https://mcp.example/mcp"], "--resource finds its own"),
        (
            ["login", "--issuer", "https://idp.example", "--client-secret-stdin"],
            "--issuer needs --client-id",
        ),
        (
            ["login", "--resource", "https://mcp.example/mcp", "--client-secret-stdin"],
            "--client-secret-stdin needs --client-id",
        ),
        (
            [
                *("login", "--resource", "https://r.example", "--client-id", "c"),
                *("--client-secret-stdin", "--paste"),
            ],
            "both read standard input",
        ),
        (["login", "--client-metadata-url", "https://a/c.json"], "goes with --resource"),
        (
            [
                *("login", "--resource", "https://r.example", "--client-id", "c"),
                *("--client-metadata-url", "https://a/c.json"),
            ],
            "give it or --client-id, not both",
        ),
        (
            ["login", "--resource", "https://mcp.example/mcp", "--api-key"],
            "--api-key is ChatGPT's token exchange",
        ),
        (["login", "work", "--issuer", "https://idp.example", "--client-id", "c"], "not both"),
        (["login", "work", "--name", "other"], "--name names a new login"),
        (["login", "--timeout", "0"], "--timeout must be a positive"),
        (
            ["login", "--issuer", "https://idp.example", "--client-id", "c", "--api-key"],
            "--api-key is ChatGPT's token exchange",
        ),
        (["login", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["status", "--jsn"], "unrecognized arguments: --jsn"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_usage_errors_exit_2_before_any_io(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    """Contradictory or unknown options are usage errors: exit 2, the usage and one error
    line on stderr, and nothing written (the home is not even created)."""
    home = tmp_path / "home"
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--home", str(home)])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert reason in errors[0]
    assert captured.out == ""
    assert not home.exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version and exits 0."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"vandamme-oauth {version('vandamme-oauth')}"


def test_plain_http_issuer_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-loopback http issuer is refused with a clear reason."""
    code = main(
        ["login", "--issuer", "http://idp.example", "--client-id", "c", "--home", str(tmp_path)]
    )
    assert code == 1
    assert "https" in capsys.readouterr().err


def _store(home: Path, name: str, auth: AuthData, *, profile: bool = True) -> None:
    storage = FileSystemAuthStorage(home, name)

    async def store() -> None:
        if profile:
            await storage.remember_provider(PROVIDER.replace(name=name).to_dict())
        await storage.write_auth(auth)

    asyncio.run(store())


def _secrets(*logins: AuthData) -> set[str]:
    return {
        value
        for auth in logins
        for value in (auth.access_token, auth.refresh_token, auth.id_token)
        if value
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "in 0 s"),
        (42.9, "in 42 s"),
        (59.99, "in 59 s"),
        (60, "in 1 min"),
        (3599, "in 59 min"),
        (3600, "in 1 h 0 min"),
        (86399, "in 23 h 59 min"),
        (90061, "in 1 d 1 h"),
        (-5, "5 s ago"),
        (-7260, "2 h 1 min ago"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    """Expiry is shown in a human form, with seconds when under a minute."""
    assert human_duration(seconds) == text


def _logins(home: Path) -> dict[str, AuthData]:
    now = time.time()
    logins = {
        "fresh": LOGIN.replace(expires_at=now + 3600, last_refresh=now - 60),
        "soon": LOGIN.replace(expires_at=now + 120, last_refresh=now - 3400),
        "stale": LOGIN.replace(expires_at=now - 3600, last_refresh=now - 7200),
        "dead": LOGIN.replace(expires_at=now - 3600, last_refresh=now - 7200, refresh_token=None),
    }
    for name, auth in logins.items():
        _store(home, name, auth)
    (home / "broken.json").write_text("{")
    return logins


def test_status_says_each_logins_state_and_fails_unless_all_are_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One state word per login; a login that needs a new sign-in names the command; the
    exit code is 0 only when every login shown is usable; no secret is printed."""
    logins = _logins(tmp_path)
    assert main(["status", "--home", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert heads[1:] == [
        "dead: expired (no refresh token: log in again)",
        "fresh: valid",
        "soon: expiring (renewed on next use)",
        "stale: expired (renewed on next use)",
    ]
    assert heads[0].startswith(f"broken: unreadable (the auth file {tmp_path / 'broken.json'} ")
    assert f"  to fix:      vandamme-oauth login dead --home {tmp_path}" in out
    assert f"  to fix:      vandamme-oauth login broken --home {tmp_path}" in out
    assert out.count("to fix:") == 2
    assert "  account:     a@example.com (acct)" in out
    assert "  issuer:      https://idp.example" in out
    assert "  scopes:      openid" in out
    assert "  expires:     in 1 min (" in out or "  expires:     in 2 min (" in out
    assert "  expires:     1 h 0 min ago (" in out
    assert not any(secret in out for secret in _secrets(*logins.values()))
    for name, code in (("fresh", 0), ("soon", 0), ("stale", 0), ("dead", 1), ("broken", 1)):
        assert main(["status", name, "--home", str(tmp_path)]) == code, name
    capsys.readouterr()


def test_status_json_is_a_stable_document_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --json: version 1, one object per login with the same keys, the same verdicts
    as the text form, and no secret in any value."""
    logins = _logins(tmp_path)
    assert main(["status", "--json", "--home", str(tmp_path)]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == 1
    assert document["home"] == str(tmp_path)
    by_name = {entry["name"]: entry for entry in document["logins"]}
    assert sorted(by_name) == ["broken", "dead", "fresh", "soon", "stale"]
    keys = {
        "name", "state", "usable", "storage", "account_id", "email", "plan", "issuer", "resource",
        "scopes", "expires_at", "expires_in", "last_refresh", "refreshable", "detail", "fix",
    }  # fmt: skip
    assert all(set(entry) == keys for entry in document["logins"])
    verdicts = {name: (entry["state"], entry["usable"]) for name, entry in by_name.items()}
    assert verdicts == {
        "broken": ("unreadable", False),
        "dead": ("expired", False),
        "fresh": ("valid", True),
        "soon": ("expiring", True),
        "stale": ("expired", True),
    }
    assert 3500 < by_name["fresh"]["expires_in"] <= 3600
    assert by_name["stale"]["expires_in"] <= -3600
    assert by_name["fresh"]["refreshable"] is True
    assert by_name["dead"]["refreshable"] is False
    assert by_name["dead"]["fix"] == f"vandamme-oauth login dead --home {tmp_path}"
    assert by_name["fresh"]["fix"] is None
    assert by_name["fresh"]["scopes"] == ["openid"]
    assert by_name["fresh"]["expires_at"].endswith("Z")
    text = json.dumps(document)
    assert not any(secret in text for secret in _secrets(*logins.values()))
    assert main(["status", "fresh", "--json", "--home", str(tmp_path)]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)["logins"]] == ["fresh"]


def test_status_shows_the_chatgpt_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ChatGPT login shows the plan named in its ID token; other logins show none."""
    claims = {"https://api.openai.com/auth": {"chatgpt_plan_type": "plus"}, "sub": "u"}
    auth = LOGIN.replace(id_token=make_jwt(claims), expires_at=time.time() + 3600)
    asyncio.run(FileSystemAuthStorage(tmp_path, "chatgpt").write_auth(auth))  # the preset
    _store(tmp_path, "other", auth)
    assert main(["status", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("  plan:        plus") == 1
    assert out.index("plan:") < out.index("other: valid")
    assert main(["status", "--json", "--home", str(tmp_path)]) == 0
    plans = {e["name"]: e["plan"] for e in json.loads(capsys.readouterr().out)["logins"]}
    assert plans == {"chatgpt": "plus", "other": None}


def test_status_of_a_login_without_its_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tokens without a saved provider cannot be refreshed or revoked: not usable."""
    _store(tmp_path, "orphan", LOGIN.replace(expires_at=time.time() + 3600), profile=False)
    assert main(["status", "--home", str(tmp_path)]) == 1
    assert "orphan: no provider (its provider profile is missing: log in again)" in (
        capsys.readouterr().out
    )


def test_logout_with_several_logins_asks_for_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """logout without a name refuses to guess when several logins exist."""
    asyncio.run(FileSystemAuthStorage(tmp_path, "a").write_auth(LOGIN))
    asyncio.run(FileSystemAuthStorage(tmp_path, "b").write_auth(LOGIN))
    assert main(["logout", "--home", str(tmp_path)]) == 1
    assert "several logins" in capsys.readouterr().err
    assert (tmp_path / "a.json").exists()


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


def test_api_key_prints_the_stored_key_or_says_how_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`api-key NAME` prints the key kept with the login, nothing else; without one it is
    one line naming the command that obtains it."""
    _store(tmp_path, "chatgpt", LOGIN.replace(api_key="sk-proj-KEY"))
    _store(tmp_path, "work", LOGIN)
    assert main(["api-key", "chatgpt", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr() == ("sk-proj-KEY\n", "")
    assert main(["api-key", "work", "--home", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "vandamme-oauth: the login 'work' has no API key; get one with: "
        "vandamme-oauth login work --api-key"
    ]
    assert main(["status", "--json", "--home", str(tmp_path)]) == 0
    assert "sk-proj-KEY" not in capsys.readouterr().out  # status never shows it


@respx.mock
async def test_login_api_key_is_best_effort(tmp_path: Path) -> None:
    """After a ChatGPT login, --api-key exchanges the ID token: a key is stored with the
    login and announced in one line; a refusal is one notice and the login stands."""
    from vandamme_oauth import ProviderConfig

    provider = ProviderConfig.chatgpt()
    storage = FileSystemAuthStorage(tmp_path, "chatgpt")
    await storage.write_auth(LOGIN)
    route = respx.post(provider.token_endpoint).respond(json={"access_token": "sk-proj-NEW"})
    notices: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_cli_login, "say", notices.append)
        await _cli_login._add_api_key(provider, storage, LOGIN)
        stored = await storage.read_auth()
        assert stored == LOGIN.replace(api_key="sk-proj-NEW")
        route.respond(400, json={"error": "invalid_request"})
        await _cli_login._add_api_key(provider, storage, LOGIN)
    assert await storage.read_auth() == stored  # the refusal changed nothing
    assert notices == [
        "An OpenAI API key is stored with the login; show it with: vandamme-oauth api-key chatgpt",
        "No API key: the API-key exchange was refused (HTTP 400: "
        '\'{"error":"invalid_request"}\') (the login stands).',
    ]
