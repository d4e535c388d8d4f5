"""Confidential clients against the real provider, next to the public one: the secret goes
by HTTP Basic or in the form (chosen from discovery, or as asked) for the code exchange, the
refresh, the device grant and revocation; it is never in a repr, a profile, a log or an
error."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import scripted_login
from tests.support.user_agent import not_from_browser, run_device_browser
from vandamme_oauth import (
    DeviceCode,
    DeviceFlow,
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    ProviderConfig,
    StorageError,
    TokenClient,
    TokenEndpointError,
    TokenManager,
    open_login,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

METHODS = ["client_secret_basic", "client_secret_post"]


async def confidential(
    oidc_provider: RunningProvider, method: str, *, secret: str | None = None
) -> ProviderConfig:
    return await ProviderConfig.discover(
        oidc_provider.issuer,
        client_id=oidc_provider.confidential_client_id(method),
        client_secret=secret or oidc_provider.client_secret,
        token_endpoint_auth_method=method,  # type: ignore[arg-type]
        scopes=["openid", "offline_access", "email"],
        name=method.replace("_", "-"),
    )


async def test_discovery_picks_basic_when_the_provider_lists_it(
    oidc_provider: RunningProvider,
) -> None:
    """Without a choice, a secret goes by HTTP Basic (listed by the provider); a public
    client sends none; the secret is in no repr and no saved profile."""
    provider = await ProviderConfig.discover(
        oidc_provider.issuer,
        client_id=oidc_provider.confidential_client_id("client_secret_basic"),
        client_secret=oidc_provider.client_secret,
    )
    assert provider.token_endpoint_auth_method == "client_secret_basic"
    assert oidc_provider.client_secret not in repr(provider)
    assert "client_secret" not in provider.to_dict()
    assert oidc_provider.client_secret not in str(provider.to_dict())
    public = await ProviderConfig.discover(oidc_provider.issuer, client_id=oidc_provider.client_id)
    assert public.token_endpoint_auth_method == "none"
    restored = ProviderConfig.from_dict(
        provider.to_dict(), client_secret=oidc_provider.client_secret
    )
    assert restored == provider


@pytest.mark.parametrize("method", METHODS)
async def test_login_refresh_and_revoke_with_a_client_secret(
    oidc_provider: RunningProvider, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole life of a login for a confidential client: exchange, refresh (through the
    manager), revocation; the secret appears in no log record."""
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(not_from_browser)
    provider = await confidential(oidc_provider, method)
    storage = InMemoryAuthStorage()
    before = oidc_provider.stats()
    login = await scripted_login(provider, storage)
    assert login.auth.refresh_token
    assert login.auth.expires_at is not None
    await storage.write_auth(login.auth.replace(expires_at=time.time() - 1))
    async with TokenManager(provider, storage) as manager:
        token = await manager.get_access_token()
    assert token != login.auth.access_token
    stored = await storage.read_auth()
    assert stored is not None
    async with TokenClient(provider) as client:
        assert await client.revoke(stored)
    after = oidc_provider.stats()
    assert after["authorization_code"] == before["authorization_code"] + 1
    assert after["refresh_token"] == before["refresh_token"] + 1
    assert after["revocation"] == before["revocation"] + 1
    assert after["token_errors"] == before["token_errors"]
    assert oidc_provider.client_secret not in caplog.text


@pytest.mark.parametrize("method", METHODS)
async def test_device_login_with_a_client_secret(
    oidc_provider: RunningProvider, method: str
) -> None:
    """The device authorization request and the device-code grant carry the secret too."""
    provider = await confidential(oidc_provider, method)
    codes: asyncio.Queue[DeviceCode] = asyncio.Queue()
    entered = asyncio.Event()

    async def sleep_until_entered(_: float) -> None:
        await entered.wait()

    async with DeviceFlow(
        provider, InMemoryAuthStorage(), on_code=codes.put_nowait, sleep=sleep_until_entered
    ) as flow:
        task = asyncio.create_task(flow.authenticate())
        code = await asyncio.wait_for(codes.get(), timeout=30)
        await run_device_browser(code.verification_uri, code.user_code)
        entered.set()
        auth = await task
    assert auth.account_id == "alice"


@pytest.mark.parametrize("method", METHODS)
async def test_a_wrong_secret_is_refused_without_being_repeated(
    oidc_provider: RunningProvider, method: str
) -> None:
    """A wrong secret: the provider answers invalid_client; the error names that, not the
    secret (even one the provider would echo)."""
    wrong = "the-wrong-secret-value"
    provider = await confidential(oidc_provider, method, secret=wrong)
    storage = InMemoryAuthStorage()
    with pytest.raises(TokenEndpointError) as caught:
        await scripted_login(provider, storage)
    assert caught.value.error == "invalid_client"
    assert wrong not in str(caught.value)
    assert wrong not in (caught.value.body or "")
    assert await storage.read_auth() is None


async def test_a_confidential_login_from_code_opens_with_its_secret(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """The saved profile of a confidential client holds no secret: open_login() takes it
    again and refreshes; without it the error says what is missing."""
    provider = await confidential(oidc_provider, "client_secret_post")
    storage = FileSystemAuthStorage(tmp_path, provider.name)
    login = await scripted_login(provider, storage)
    assert oidc_provider.client_secret not in storage.profile_path.read_text()
    with pytest.raises(StorageError, match="a client_secret goes with"):
        await open_login(provider.name, home=tmp_path)
    opened, opened_storage = await open_login(
        provider.name, home=tmp_path, client_secret=oidc_provider.client_secret
    )
    assert opened == provider
    await opened_storage.write_auth(login.auth.replace(expires_at=time.time() - 1))
    async with TokenManager(opened, opened_storage) as manager:
        assert await manager.get_access_token() != login.auth.access_token
