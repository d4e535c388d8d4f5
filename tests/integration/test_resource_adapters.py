"""The httpx and httpx2 adapters starting from a resource: a 401 with no login runs the
login hook (or names the command), a 403 insufficient_scope runs one step-up login with the
union of the scopes (or names them), never in a loop. Real provider, loopback resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import pytest

from tests.integration.conftest import scripted_login
from tests.support.resource_server import ResourceServer
from vandamme_oauth import (
    InMemoryAuthStorage,
    InsufficientScopeError,
    NotAuthenticatedError,
    TokenManager,
    provider_for_resource,
)
from vandamme_oauth.integrations import httpx as httpx_adapter
from vandamme_oauth.integrations import httpx2 as httpx2_adapter

if TYPE_CHECKING:
    from tests.support.provider import RunningProvider
    from vandamme_oauth import ProviderConfig
    from vandamme_oauth.integrations.httpx import LoginNeeded

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

ADAPTERS = [
    pytest.param((httpx.AsyncClient, httpx_adapter.TokenManagerAuth), id="httpx"),
    pytest.param((httpx2.AsyncClient, httpx2_adapter.TokenManagerAuth), id="httpx2"),
]


class Logins:
    """A login hook that signs in through the real provider, recording what it was asked."""

    def __init__(self, provider: ProviderConfig, storage: InMemoryAuthStorage) -> None:
        self.provider, self.storage = provider, storage
        self.asked: list[LoginNeeded] = []
        self.do_nothing = False

    async def __call__(self, needed: LoginNeeded) -> None:
        self.asked.append(needed)
        if not self.do_nothing:
            await scripted_login(self.provider.replace(scopes=needed.scopes), self.storage)


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_resources_401_runs_the_login_hook_once(
    oidc_provider: RunningProvider, adapter: tuple[Any, Any]
) -> None:
    client_class, auth_class = adapter
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        provider, _ = await provider_for_resource(resource.resource)
        storage = InMemoryAuthStorage()
        hook = Logins(provider, storage)
        async with (
            TokenManager(provider, storage) as manager,
            client_class(auth=auth_class(manager, login=hook)) as client,
        ):
            first = await client.get(resource.resource)
            second = await client.get(resource.resource)
        assert (first.status_code, second.status_code) == (200, 200)
        (needed,) = hook.asked
        assert (needed.resource, needed.scopes, needed.step_up) == (
            resource.resource,
            ("files:read",),
            False,
        )
        assert needed.challenge is not None
        assert needed.challenge.params["resource_metadata"] == resource.metadata_url


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_without_a_hook_a_401_names_the_login_command(
    oidc_provider: RunningProvider, adapter: tuple[Any, Any]
) -> None:
    client_class, auth_class = adapter
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        provider, _ = await provider_for_resource(resource.resource)
        async with (
            TokenManager(provider, InMemoryAuthStorage()) as manager,
            client_class(auth=auth_class(manager)) as client,
        ):
            with pytest.raises(NotAuthenticatedError) as caught:
                await client.get(resource.resource)
        assert str(caught.value) == (
            f"{resource.resource} needs a login; run: vandamme-oauth login --resource "
            f"{resource.resource}"
        )


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_insufficient_scope_steps_up_once_with_the_union_of_scopes(
    oidc_provider: RunningProvider, adapter: tuple[Any, Any]
) -> None:
    """Logged in with files:read, a route needing files:write answers 403: one step-up
    login asking for what is held plus what is required, then the route answers 200. A
    hook that does not help gets the 403 back after one try (no loop)."""
    client_class, auth_class = adapter
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        provider, _ = await provider_for_resource(resource.resource)
        storage = InMemoryAuthStorage()
        await scripted_login(provider, storage)
        hook = Logins(provider, storage)
        async with (
            TokenManager(provider, storage) as manager,
            client_class(auth=auth_class(manager, login=hook)) as client,
        ):
            hook.do_nothing = True
            refused = await client.get(f"{resource.resource}/write")
            assert refused.status_code == 403
            assert len(hook.asked) == 1
            hook.do_nothing = False
            allowed = await client.get(f"{resource.resource}/write")
        assert allowed.status_code == 200
        assert [n.step_up for n in hook.asked] == [True, True]
        assert hook.asked[-1].scopes == ("files:read", "offline_access", "files:write")


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_without_a_hook_insufficient_scope_names_the_scopes_and_the_command(
    oidc_provider: RunningProvider, adapter: tuple[Any, Any]
) -> None:
    client_class, auth_class = adapter
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        provider, _ = await provider_for_resource(resource.resource, name="files")
        storage = InMemoryAuthStorage()
        await scripted_login(provider, storage)
        async with (
            TokenManager(provider, storage) as manager,
            client_class(auth=auth_class(manager)) as client,
        ):
            with pytest.raises(InsufficientScopeError) as caught:
                await client.get(f"{resource.resource}/write")
        assert "files:write" in caught.value.scopes
        assert caught.value.resource == resource.resource
        assert str(caught.value).startswith(
            f"{resource.resource} needs the scopes files:read files:write; log in again with "
            "them: vandamme-oauth login files --scope "
        )
