"""No secret ever reaches a log record: a whole login, refresh and logout at DEBUG."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

import vandamme_oauth._flow
from tests.conftest import FakeClock
from tests.integration.conftest import scripted_login
from tests.support.user_agent import not_from_browser
from vandamme_oauth import (
    FileSystemAuthStorage,
    PkcePair,
    ProviderConfig,
    TokenClient,
    TokenManager,
    new_pkce,
)
from vandamme_oauth._cli import _ExtraFormatter

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_debug_logs_of_a_whole_session_hold_no_secret(
    provider_config: ProviderConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens, code, state and verifier appear nowhere in DEBUG output (ours, httpx's, aiohttp's),
    while the steps that matter are logged."""
    verifiers: list[str] = []

    def recording_new_pkce() -> PkcePair:
        pair = new_pkce()
        verifiers.append(pair.verifier)
        return pair

    monkeypatch.setattr(vandamme_oauth._flow, "new_pkce", recording_new_pkce)
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(not_from_browser)
    storage = FileSystemAuthStorage(tmp_path, "test")
    login = await scripted_login(provider_config, storage)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at + 1)
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        await manager.get_access_token()
    refreshed = await storage.read_auth()
    assert refreshed is not None
    async with TokenClient(provider_config) as client:
        await client.revoke(refreshed)

    callback = parse_qs(urlsplit(login.browser.callback_url).query)
    secrets = {
        "code": callback["code"][0],
        "state": callback["state"][0],
        "verifier": verifiers[0],
        "access_token": login.auth.access_token,
        "refresh_token": login.auth.refresh_token,
        "id_token": login.auth.id_token,
        "new_access_token": refreshed.access_token,
        "new_refresh_token": refreshed.refresh_token,
    }
    formatter = _ExtraFormatter()
    output = caplog.text + "\n".join(formatter.format(r) for r in caplog.records)
    for name, value in secrets.items():
        assert value, name
        assert value not in output, f"{name} leaked into the logs"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("vandamme_oauth")]
    for step in (
        "callback server listening",
        "callback accepted; exchanging the code",
        "token request succeeded",
        "login stored",
        "token revoked",
    ):
        assert step in messages, step
    listening = next(r for r in caplog.records if r.getMessage() == "callback server listening")
    assert isinstance(listening.__dict__["port"], int)
