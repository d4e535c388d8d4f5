"""Nothing blocking runs on the event loop: discovery, login, refresh, watching and logout
against the real provider, with file storage, under the OffLoopGuard."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import FakeClock
from tests.integration.conftest import scripted_login
from tests.support.off_loop import OffLoopGuard
from vandamme_oauth import (
    FileSystemAuthStorage,
    ProviderConfig,
    TokenClient,
    TokenManager,
    _http_client,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def test_login_refresh_and_logout_never_block_the_loop(
    oidc_provider: RunningProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file operation and the CA-bundle load happen in worker threads."""
    monkeypatch.setattr(_http_client, "_ssl_context", None)  # built again, under the guard
    guard = OffLoopGuard(monkeypatch)
    provider = await ProviderConfig.discover(
        oidc_provider.issuer,
        client_id=oidc_provider.client_id,
        scopes=["openid", "offline_access", "email"],
        name="test",
    )
    storage = FileSystemAuthStorage(tmp_path / "home", "test")
    login = await scripted_login(provider, storage)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at + 1)
    async with TokenManager(provider, storage, clock=clock, watch_interval=0.01) as manager:
        token = await manager.get_access_token()  # a refresh under the file lock
        assert token != login.auth.access_token
    stored = await storage.read_auth()
    assert stored is not None
    async with TokenClient(provider) as client:
        assert await client.revoke(stored)
    await storage.clear_auth()
    assert guard.offences == []
    assert guard.calls > 0  # the guard saw the work, in threads
