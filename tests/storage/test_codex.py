"""CodexAuthStorage: reading and writing the Codex CLI's auth.json in place."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
import respx

from tests.conftest import FakeClock
from tests.test_jwt_claims import make_jwt
from vandamme_oauth import (
    AuthData,
    CodexAuthStorage,
    ProviderConfig,
    StorageError,
    TokenManager,
)

NOW = 1_800_000_000
ID_TOKEN = make_jwt(
    {
        "sub": "user-1",
        "email": "codex@example.com",
        "https://api.openai.com/auth": {
            "chatgpt_account_id": "acct-42",
            "chatgpt_plan_type": "plus",
        },
    }
)
ACCESS = make_jwt({"exp": NOW + 3600, "sub": "user-1"})


def codex_file(home: Path, **extra: object) -> Path:
    """An auth.json as the Codex CLI writes it, with keys of a newer version."""
    home.mkdir(exist_ok=True)
    path = home / "auth.json"
    doc = {
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": ID_TOKEN,
            "access_token": ACCESS,
            "refresh_token": "rt-1",
            "account_id": "acct-42",
            "future_token_key": "keep me",
        },
        "last_refresh": "2027-01-15T07:00:00.123456789Z",
        "auth_mode": "chatgpt",
        **extra,
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


async def test_reads_the_codex_login(tmp_path: Path) -> None:
    """Tokens, account id, email, expiry (from the access token's exp) and last_refresh."""
    codex_file(tmp_path)
    auth = await CodexAuthStorage(tmp_path).read_auth()
    assert auth is not None
    assert (auth.access_token, auth.refresh_token, auth.id_token) == (ACCESS, "rt-1", ID_TOKEN)
    assert auth.account_id == "acct-42"
    assert auth.email == "codex@example.com"
    assert auth.expires_at == NOW + 3600
    assert auth.last_refresh == pytest.approx(1_799_996_400.123, abs=0.001)


async def test_codex_home_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$CODEX_HOME picks the folder, as for the Codex CLI."""
    monkeypatch.setenv("CODEX_HOME", str(tmp_path))
    assert CodexAuthStorage().path == tmp_path / "auth.json"


async def test_write_keeps_unknown_keys_and_mode(tmp_path: Path) -> None:
    """Writing replaces the tokens and last_refresh and keeps every other key, mode 0600."""
    path = codex_file(tmp_path, OPENAI_API_KEY="sk-keep")
    storage = CodexAuthStorage(tmp_path)
    auth = await storage.read_auth()
    assert auth is not None
    await storage.write_auth(
        auth.replace(access_token="new-at", refresh_token="rt-2", last_refresh=float(NOW))
    )
    doc = json.loads(path.read_text())
    assert doc["OPENAI_API_KEY"] == "sk-keep"
    assert doc["auth_mode"] == "chatgpt"
    assert doc["tokens"]["future_token_key"] == "keep me"
    assert doc["tokens"]["access_token"] == "new-at"
    assert doc["tokens"]["refresh_token"] == "rt-2"
    assert doc["tokens"]["account_id"] == "acct-42"
    assert doc["last_refresh"] == "2027-01-15T08:00:00Z"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"OPENAI_API_KEY": null}', "no ChatGPT login"),
        (b"[]", "JSON object"),
        (b'{"tokens": {"access_token": ""}}', "no access token"),
        (b"{", "not valid JSON"),
    ],
)
async def test_unusable_codex_files(tmp_path: Path, content: bytes, reason: str) -> None:
    """Malformed or empty logins raise StorageError naming the file."""
    (tmp_path / "auth.json").write_bytes(content)
    with pytest.raises(StorageError, match=reason) as caught:
        await CodexAuthStorage(tmp_path).read_auth()
    assert str(tmp_path / "auth.json") in str(caught.value)


async def test_manager_refreshes_the_codex_file_in_place(
    tmp_path: Path, respx_mock: respx.MockRouter
) -> None:
    """A TokenManager on the Codex file refreshes with ChatGPT's JSON body and writes the
    rotated tokens back into the same file, keeping the Codex CLI's other keys."""
    path = codex_file(tmp_path)
    provider = ProviderConfig.chatgpt()
    new_access = make_jwt({"exp": NOW + 7200})
    route = respx_mock.post(provider.token_endpoint).respond(
        json={"access_token": new_access, "refresh_token": "rt-2"}
    )
    clock = FakeClock(NOW + 3600 - 10)
    async with (
        httpx.AsyncClient() as http,
        TokenManager(provider, CodexAuthStorage(tmp_path), clock=clock, http_client=http) as m,
    ):
        assert await m.get_access_token() == new_access
        assert (await m.get_auth_data()).account_id == "acct-42"
    assert json.loads(route.calls.last.request.content)["refresh_token"] == "rt-1"
    doc = json.loads(path.read_text())
    assert doc["tokens"]["refresh_token"] == "rt-2"
    assert doc["tokens"]["id_token"] == ID_TOKEN  # kept: the answer had none
    assert doc["auth_mode"] == "chatgpt"


async def test_an_api_key_login_is_valid_and_kept(tmp_path: Path) -> None:
    """A file that holds only OPENAI_API_KEY (a Codex API-key login) is not corrupt: it
    holds no ChatGPT login; a ChatGPT login written into it keeps the key; logging out
    removes the tokens and keeps the key."""
    path = tmp_path / "auth.json"
    path.write_text('{"OPENAI_API_KEY": "sk-kept", "future": 1}')
    storage = CodexAuthStorage(tmp_path)
    assert await storage.read_auth() is None
    assert not await storage.is_authenticated()
    login = AuthData(access_token=ACCESS, refresh_token="rt", id_token=ID_TOKEN, last_refresh=NOW)
    await storage.write_auth(login)
    doc = json.loads(path.read_text())
    assert (doc["OPENAI_API_KEY"], doc["future"]) == ("sk-kept", 1)
    assert doc["tokens"]["refresh_token"] == "rt"
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.refresh_token == "rt"
    await storage.clear_auth()
    doc = json.loads(path.read_text())
    assert (doc["OPENAI_API_KEY"], doc["tokens"], doc["future"]) == ("sk-kept", None, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await storage.read_auth() is None


async def test_logout_without_an_api_key_removes_the_file(tmp_path: Path) -> None:
    """With no API key in it, the file goes with the login."""
    path = codex_file(tmp_path)
    await CodexAuthStorage(tmp_path).clear_auth()
    assert not path.exists()


async def test_the_api_key_and_the_plan_travel_with_the_login(tmp_path: Path) -> None:
    """OPENAI_API_KEY is the login's api_key both ways (a key beside tokens is read; a key
    obtained with a login is written); the ID token's typed claims are read; a login
    without a key keeps the file's key."""
    path = codex_file(tmp_path, OPENAI_API_KEY="sk-existing")
    storage = CodexAuthStorage(tmp_path)
    auth = await storage.read_auth()
    assert auth is not None
    assert (auth.api_key, auth.plan_type) == ("sk-existing", "plus")
    assert "sk-existing" not in repr(auth)
    await storage.write_auth(auth.replace(api_key=None, refresh_token="rt-2"))
    assert json.loads(path.read_text())["OPENAI_API_KEY"] == "sk-existing"
    await storage.write_auth(auth.replace(api_key="sk-new"))
    assert json.loads(path.read_text())["OPENAI_API_KEY"] == "sk-new"
    again = await storage.read_auth()
    assert again is not None
    assert again.api_key == "sk-new"
