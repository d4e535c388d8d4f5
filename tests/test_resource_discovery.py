"""provider_for_resource's choices with HTTP faked by respx: where the client id comes from
(given, a Client ID Metadata Document the server accepts, a registration, or nowhere), a
server without S256, a resource that answers without a challenge, and which scopes are
registered (only the server's own)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from vandamme_oauth import DiscoveryError, RegistrationError, provider_for_resource

RESOURCE = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"
PRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def server_metadata(**extra: Any) -> dict[str, Any]:
    return {
        "issuer": AS,
        "authorization_endpoint": f"{AS}/authorize",
        "token_endpoint": f"{AS}/token",
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "offline_access"],
        **extra,
    }


def serve(router: respx.MockRouter, *, challenge: bool = True, **extra: Any) -> None:
    header = {"WWW-Authenticate": f'Bearer resource_metadata="{PRM}", scope="tools"'}
    router.get(RESOURCE).mock(return_value=httpx.Response(401, headers=header if challenge else {}))
    router.get(PRM).mock(
        return_value=httpx.Response(200, json={"resource": RESOURCE, "authorization_servers": [AS]})
    )
    router.get(f"{AS}/.well-known/oauth-authorization-server").mock(
        return_value=httpx.Response(200, json=server_metadata(**extra))
    )


@respx.mock
async def test_a_client_id_given_is_used_without_registering() -> None:
    serve(respx.mock, registration_endpoint=f"{AS}/register")
    register = respx.post(f"{AS}/register")
    provider, registration = await provider_for_resource(RESOURCE, client_id="mine")
    assert (provider.client_id, registration, register.called) == ("mine", None, False)
    assert provider.scopes == ("tools", "offline_access")
    assert provider.resource == RESOURCE


@respx.mock
async def test_a_client_metadata_document_is_the_client_id_where_accepted() -> None:
    serve(respx.mock, client_id_metadata_document_supported=True)
    url = "https://app.example/client.json"
    provider, registration = await provider_for_resource(RESOURCE, client_metadata_url=url)
    assert (provider.client_id, registration) == (url, None)


@respx.mock
async def test_a_registration_asks_only_for_the_servers_own_scopes() -> None:
    serve(respx.mock, registration_endpoint=f"{AS}/register")
    register = respx.post(f"{AS}/register").mock(
        return_value=httpx.Response(201, json={"client_id": "new"})
    )
    provider, registration = await provider_for_resource(RESOURCE)
    assert registration is not None
    assert provider.client_id == "new"
    sent = json.loads(register.calls[0].request.content)
    assert sent["scope"] == "offline_access"  # "tools" is the resource's, not the server's
    assert sent["redirect_uris"] == ["http://127.0.0.1/auth/callback"]


@respx.mock
async def test_a_metadata_document_nobody_accepts_and_no_registration_say_what_to_do() -> None:
    serve(respx.mock)
    with pytest.raises(RegistrationError, match="accepts neither Client ID Metadata Documents"):
        await provider_for_resource(RESOURCE, client_metadata_url="https://app.example/c.json")


@respx.mock
async def test_no_way_to_a_client_id_says_to_pass_one() -> None:
    serve(respx.mock)
    with pytest.raises(
        RegistrationError, match=r"offers no dynamic client registration.*--client-id"
    ):
        await provider_for_resource(RESOURCE)


@respx.mock
async def test_a_server_without_s256_is_refused() -> None:
    serve(respx.mock, code_challenge_methods_supported=["plain"])
    with pytest.raises(DiscoveryError, match="requires PKCE S256"):
        await provider_for_resource(RESOURCE, client_id="mine")


@respx.mock
async def test_without_a_challenge_the_well_known_metadata_is_still_found() -> None:
    """A resource that answers 401 without WWW-Authenticate: the path-inserted well-known
    URI is tried, and the resource's scopes_supported (none here) leave the scope unsent."""
    serve(respx.mock, challenge=False)
    provider, _ = await provider_for_resource(RESOURCE, client_id="mine")
    assert provider.scopes == ()


@respx.mock
async def test_an_unreachable_resource_is_one_line_saying_so() -> None:
    respx.get(RESOURCE).mock(side_effect=httpx.ConnectError("All connection attempts failed"))
    with pytest.raises(DiscoveryError) as caught:
        await provider_for_resource(RESOURCE)
    assert str(caught.value) == (
        f"cannot reach the resource {RESOURCE} (ConnectError: All connection attempts "
        "failed); check the URL and your network"
    )
