"""RFC 8707 resource indicators in every request of a login bound to a resource: the
authorization request, the code exchange, each refresh (form and JSON bodies) and the device
grant; a login without scopes sends no ``scope``; saved profiles keep the resource."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import respx

from tests.test_protocol import GENERIC, PKCE
from vandamme_oauth import ProviderConfig, TokenClient, ValidationError
from vandamme_oauth._device_codes import RFC8628, DeviceCode
from vandamme_oauth._protocol import (
    build_authorization_url,
    code_exchange_request,
    refresh_request,
)

RESOURCE = "https://mcp.example.com/mcp"
BOUND = GENERIC.replace(
    resource=RESOURCE,
    device_authorization_endpoint="https://idp.example/device",
)


def form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


def test_the_authorization_request_names_the_resource() -> None:
    url = build_authorization_url(
        BOUND, redirect_uri="http://127.0.0.1:5000/auth/callback", state="S", pkce=PKCE
    )
    assert parse_qsl(urlsplit(url).query) == [
        ("response_type", "code"),
        ("client_id", "cid"),
        ("redirect_uri", "http://127.0.0.1:5000/auth/callback"),
        ("scope", "openid offline_access"),
        ("code_challenge", "c" * 43),
        ("code_challenge_method", "S256"),
        ("resource", RESOURCE),
        ("state", "S"),
    ]


def test_a_login_without_scopes_sends_no_scope() -> None:
    url = build_authorization_url(
        BOUND.replace(scopes=()), redirect_uri="http://127.0.0.1:5/cb", state="S", pkce=PKCE
    )
    assert "scope" not in dict(parse_qsl(urlsplit(url).query))


def test_the_code_exchange_and_every_refresh_name_the_resource() -> None:
    exchange = code_exchange_request(
        BOUND, code="C", redirect_uri="http://127.0.0.1:5/cb", verifier="V"
    )
    assert form(exchange.content()[0])[-1] == ("resource", RESOURCE)
    assert form(refresh_request(BOUND, "RT").content()[0]) == [
        ("grant_type", "refresh_token"),
        ("refresh_token", "RT"),
        ("client_id", "cid"),
        ("resource", RESOURCE),
    ]
    as_json = refresh_request(BOUND.replace(refresh_body="json"), "RT").content()[0]
    assert json.loads(as_json)["resource"] == RESOURCE


def test_an_unbound_login_sends_no_resource() -> None:
    assert "resource" not in dict(form(refresh_request(GENERIC, "RT").content()[0]))


@respx.mock
async def test_the_device_grant_names_the_resource() -> None:
    """Both the device authorization request and the device_code grant carry it."""
    authorize = respx.post("https://idp.example/device").mock(
        return_value=httpx.Response(
            200,
            json={
                "device_code": "D",
                "user_code": "U",
                "verification_uri": "https://idp.example/activate",
                "expires_in": 600,
            },
        )
    )
    token = respx.post("https://idp.example/token").mock(
        return_value=httpx.Response(400, json={"error": "authorization_pending"})
    )
    async with TokenClient(BOUND) as client:
        code = await RFC8628().request_code(client)
        assert await RFC8628().poll(client, code) == "pending"
    assert isinstance(code, DeviceCode)
    assert form(authorize.calls[0].request.content) == [
        ("client_id", "cid"),
        ("scope", "openid offline_access"),
        ("resource", RESOURCE),
    ]
    assert form(token.calls[0].request.content)[-1] == ("resource", RESOURCE)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("HTTPS://MCP.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
    ],
)
def test_the_resource_is_kept_in_its_canonical_spelling_and_saved(given: str, kept: str) -> None:
    provider = GENERIC.replace(resource=given)
    assert provider.resource == kept
    saved = provider.to_dict()
    assert saved["resource"] == kept
    assert ProviderConfig.from_dict(saved) == provider


def test_a_resource_with_a_fragment_is_refused() -> None:
    with pytest.raises(ValidationError, match="no fragment"):
        GENERIC.replace(resource="https://mcp.example.com/#x")
