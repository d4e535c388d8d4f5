"""Token lifecycle against the real provider: refresh, rotation, concurrency, revocation."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import FakeClock
from tests.integration.conftest import scripted_login
from vandamme_oauth import (
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    ProviderConfig,
    ReauthenticationRequired,
    TokenClient,
    TokenManager,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def _refresh_directly(provider: ProviderConfig, refresh_token: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.post(
            provider.token_endpoint,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": provider.client_id,
            },
        )


async def test_refresh_after_expiry_persists_the_rotated_token(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """At expiry the manager refreshes once, stores the rotated refresh token, and the
    provider rejects the old one."""
    storage = FileSystemAuthStorage(tmp_path, "test")
    login = await scripted_login(provider_config, storage)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.last_refresh)
    async with TokenManager(provider_config, storage, clock=clock, refresh_margin=30) as manager:
        assert await manager.get_access_token() == login.auth.access_token
        before = oidc_provider.stats()["refresh_token"]
        clock.now = login.auth.expires_at + 1
        token = await manager.get_access_token()
        assert oidc_provider.stats()["refresh_token"] == before + 1

    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token == token != login.auth.access_token
    assert stored.refresh_token not in (None, login.auth.refresh_token)
    assert stored.account_id == "alice"
    assert stored.id_token  # kept or renewed, never dropped
    old = await _refresh_directly(provider_config, login.auth.refresh_token or "")
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"


async def test_500_concurrent_callers_at_expiry_cause_exactly_one_refresh(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """500 get_access_token() calls at the expiry instant: one refresh request, one token."""
    storage = FileSystemAuthStorage(tmp_path, "test")
    login = await scripted_login(provider_config, storage)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at)
    before = oidc_provider.stats()["refresh_token"]
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        tokens = await asyncio.gather(*(manager.get_access_token() for _ in range(500)))
    assert oidc_provider.stats()["refresh_token"] == before + 1
    assert len(set(tokens)) == 1
    assert tokens[0] != login.auth.access_token
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token == tokens[0]


async def test_revoked_refresh_token_requires_reauthentication_once(
    provider_config: ProviderConfig, oidc_provider: RunningProvider
) -> None:
    """After revocation, refresh raises ReauthenticationRequired for every caller, from a
    single request; the stored login is not overwritten."""
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    async with TokenClient(provider_config) as client:
        assert await client.revoke(login.auth) is True
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at + 1)
    errors_before = oidc_provider.stats()["token_errors"]
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        results = await asyncio.gather(
            *(manager.get_access_token() for _ in range(50)), return_exceptions=True
        )
        with pytest.raises(ReauthenticationRequired) as caught:
            await manager.get_access_token()
    assert all(isinstance(r, ReauthenticationRequired) for r in results)
    assert caught.value.error == "invalid_grant"
    assert oidc_provider.stats()["token_errors"] == errors_before + 1
    assert await storage.read_auth() == login.auth


async def test_new_login_elsewhere_heals_a_manager_that_saw_a_dead_token(
    provider_config: ProviderConfig,
) -> None:
    """A remembered permanent failure is forgotten as soon as storage holds a new login."""
    storage = InMemoryAuthStorage()
    first = await scripted_login(provider_config, storage)
    async with TokenClient(provider_config) as client:
        await client.revoke(first.auth)
    assert first.auth.expires_at is not None
    clock = FakeClock(first.auth.expires_at + 1)
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        with pytest.raises(ReauthenticationRequired):
            await manager.get_access_token()
        second = await scripted_login(provider_config, storage, login="bob")
        healed = await manager.get_auth_data()
    # bob's tokens (adopted, or refreshed from bob's refresh token since the fake clock says
    # they are near expiry): never alice's dead ones.
    assert healed.account_id == "bob"
    assert healed.access_token != first.auth.access_token
    assert (await storage.read_auth()) in (second.auth, healed)


async def test_reported_401_refreshes_once(
    provider_config: ProviderConfig, oidc_provider: RunningProvider
) -> None:
    """Many reports of a 401 for the current token cost one refresh; stale reports none."""
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    clock = FakeClock(login.auth.last_refresh)
    before = oidc_provider.stats()["refresh_token"]
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        old = await manager.get_access_token()
        for _ in range(10):
            manager.report_unauthorized(old)
        new = await asyncio.gather(*(manager.get_access_token() for _ in range(10)))
        manager.report_unauthorized(old)  # a late report about the old token
        assert await manager.get_access_token() == new[0]
    assert len(set(new)) == 1
    assert new[0] != old
    assert oidc_provider.stats()["refresh_token"] == before + 1


async def test_loopback_token_calls_are_never_proxied(
    provider_config: ProviderConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxy variables pointing at a dead proxy do not affect calls to a loopback provider."""
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at + 1)
    async with TokenManager(provider_config, storage, clock=clock) as manager:
        assert await manager.get_access_token() != login.auth.access_token


async def test_callers_cancelled_while_the_rotation_is_in_flight_lose_nothing(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """Callers waiting at expiry time out or are cancelled after the provider rotated the
    refresh token but before its answer arrived. The answer is still stored: the next call
    is served without another refresh, the provider saw one refresh and no reuse, and a
    fresh manager on the same storage serves the stored token."""
    storage = FileSystemAuthStorage(tmp_path, "test")
    login = await scripted_login(provider_config, storage)
    assert login.auth.expires_at is not None
    clock = FakeClock(login.auth.expires_at + 1)
    before = oidc_provider.stats()
    oidc_provider.set_token_latency(0, after_processing_ms=500)
    try:
        async with TokenManager(provider_config, storage, clock=clock) as manager:

            async def impatient() -> str:
                async with asyncio.timeout(0.05):
                    return await manager.get_access_token()

            cancelled = [asyncio.create_task(manager.get_access_token()) for _ in range(5)]
            timed_out = [asyncio.create_task(impatient()) for _ in range(5)]
            await asyncio.to_thread(
                oidc_provider.wait_for,
                "token_requests_processed",
                before["token_requests_processed"],
            )
            for task in cancelled:
                task.cancel()
            done = await asyncio.gather(*cancelled, *timed_out, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in done[:5])
            assert all(isinstance(r, TimeoutError) for r in done[5:])
            token = await manager.get_access_token()
    finally:
        oidc_provider.set_token_latency(0)
    after = oidc_provider.stats()
    assert after["refresh_token"] == before["refresh_token"] + 1
    assert after["token_errors"] == before["token_errors"]
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token == token != login.auth.access_token
    assert stored.refresh_token != login.auth.refresh_token
    async with TokenManager(provider_config, storage, clock=clock) as fresh:
        assert await fresh.get_access_token() == token
    assert oidc_provider.stats()["refresh_token"] == after["refresh_token"]
