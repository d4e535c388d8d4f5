"""ProviderConfig: validation, serialisation and discovery (RFC 8414 / OIDC) over respx."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from vandamme_oauth import DiscoveryError, ProviderConfig, ValidationError
from vandamme_oauth._login import login_name
from vandamme_oauth._provider import parse_metadata, well_known_urls

if TYPE_CHECKING:
    import respx

ISSUER = "https://idp.example/tenant"
METADATA = {
    "issuer": ISSUER,
    "authorization_endpoint": "https://idp.example/tenant/authorize",
    "token_endpoint": "https://idp.example/tenant/token",
    "revocation_endpoint": "https://idp.example/tenant/revoke",
    "device_authorization_endpoint": "https://idp.example/tenant/device",
    "code_challenge_methods_supported": ["S256"],
    "authorization_response_iss_parameter_supported": True,
}


def test_well_known_urls_follow_both_specs() -> None:
    """RFC 8414 inserts the well-known segment before the path; OIDC appends it."""
    assert well_known_urls(ISSUER) == [
        "https://idp.example/.well-known/oauth-authorization-server/tenant",
        "https://idp.example/tenant/.well-known/openid-configuration",
    ]


async def test_discovery_prefers_rfc8414(respx_mock: respx.MockRouter) -> None:
    """The RFC 8414 document is used when present; its fields fill the config."""
    respx_mock.get(well_known_urls(ISSUER)[0]).respond(json=METADATA)
    provider = await ProviderConfig.discover(ISSUER, client_id="cid", scopes=["openid"])
    assert provider.token_endpoint == METADATA["token_endpoint"]
    assert provider.revocation_endpoint == METADATA["revocation_endpoint"]
    assert provider.device_authorization_endpoint == METADATA["device_authorization_endpoint"]
    assert provider.require_iss is True
    assert provider.scopes == ("openid",)
    assert provider.name == "idp.example-tenant"


async def test_discovery_falls_back_to_openid_configuration(respx_mock: respx.MockRouter) -> None:
    """A 404 at the RFC 8414 URL falls back to OpenID discovery."""
    respx_mock.get(well_known_urls(ISSUER)[0]).respond(404)
    respx_mock.get(well_known_urls(ISSUER)[1]).respond(json=METADATA)
    provider = await ProviderConfig.discover(ISSUER, client_id="cid")
    assert provider.issuer == ISSUER


async def test_discovery_refuses_another_issuer(respx_mock: respx.MockRouter) -> None:
    """RFC 8414 3.3: metadata naming another issuer is not used."""
    respx_mock.get(well_known_urls(ISSUER)[0]).respond(json={**METADATA, "issuer": "https://evil"})
    with pytest.raises(DiscoveryError, match="names issuer"):
        await ProviderConfig.discover(ISSUER, client_id="cid")


async def test_discovery_failure_names_what_was_tried(respx_mock: respx.MockRouter) -> None:
    """When neither document is usable the error lists both URLs and why."""
    respx_mock.get(well_known_urls(ISSUER)[0]).respond(404)
    respx_mock.get(well_known_urls(ISSUER)[1]).respond(200, text="<html>")
    with pytest.raises(DiscoveryError) as caught:
        await ProviderConfig.discover(ISSUER, client_id="cid")
    assert "HTTP 404" in str(caught.value)
    assert "not JSON" in str(caught.value)


async def test_discovery_retries_a_503(respx_mock: respx.MockRouter) -> None:
    """Discovery is idempotent: a 503 is retried."""
    route = respx_mock.get(well_known_urls(ISSUER)[0])
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(200, json=METADATA),
    ]
    provider = await ProviderConfig.discover(ISSUER, client_id="cid")
    assert provider.issuer == ISSUER
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_endpoint": "http://idp.example/token"}, "https"),
        ({"code_challenge_methods_supported": ["plain"]}, "S256"),
        ({"authorization_endpoint": None}, "authorization_endpoint"),
    ],
)
def test_unsafe_or_incomplete_metadata_is_refused(change: dict[str, object], message: str) -> None:
    """Plain http off loopback, no S256, or a missing endpoint: DiscoveryError."""
    with pytest.raises(DiscoveryError, match=message):
        parse_metadata(ISSUER, {**METADATA, **change}, client_id="cid")


def test_plain_http_is_allowed_on_loopback_only() -> None:
    """http://127.0.0.1 issuers work (tests, local IdPs); other http hosts do not."""
    loopback = {
        k: (v.replace("https://idp.example", "http://127.0.0.1:8080") if isinstance(v, str) else v)
        for k, v in METADATA.items()
    }
    provider = parse_metadata("http://127.0.0.1:8080/tenant", loopback, client_id="cid")
    assert provider.name == "127.0.0.1-8080-tenant"
    with pytest.raises(ValidationError, match="https"):
        ProviderConfig(
            name="x",
            issuer="http://idp.example",
            client_id="c",
            authorization_endpoint="https://idp.example/a",
            token_endpoint="https://idp.example/t",
        )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST"])
def test_plain_http_is_allowed_where_the_client_goes_direct(host: str) -> None:
    ProviderConfig(
        name="x",
        issuer=f"http://{host}:8080",
        client_id="c",
        authorization_endpoint=f"http://{host}:8080/a",
        token_endpoint=f"http://{host}:8080/t",
    )


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1.2.3", "[::ffff:127.0.0.1]"])
def test_plain_http_elsewhere_on_loopback_is_refused(host: str) -> None:
    """Other loopback addresses are not among the hosts the HTTP client reaches directly:
    with a proxy in the environment, a plain-http request there (a refresh token in it)
    would go to the proxy in clear text."""
    with pytest.raises(ValidationError) as caught:
        ProviderConfig(
            name="x",
            issuer="https://idp.example",
            client_id="c",
            authorization_endpoint="https://idp.example/a",
            token_endpoint=f"http://{host}:8080/t",
        )
    assert str(caught.value) == (
        "token_endpoint must use https (plain http is only allowed on 127.0.0.1, [::1] or "
        f"localhost, which no proxy ever sees): 'http://{host}:8080/t'"
    )


def test_config_round_trips_through_a_dict() -> None:
    """to_dict/from_dict preserve every field (the CLI saves providers this way)."""
    chatgpt = ProviderConfig.chatgpt(allowed_workspace_ids=["w"])
    assert ProviderConfig.from_dict(chatgpt.to_dict()) == chatgpt
    with pytest.raises(ValidationError):
        ProviderConfig.from_dict({"name": "x"})


@pytest.mark.parametrize("name", ["", "../etc", "a b", "x.lock", "-x"])
def test_login_names_are_safe_file_names(name: str) -> None:
    """Names that could escape the folder or clash with lock files are refused."""
    with pytest.raises(ValidationError):
        ProviderConfig.chatgpt(name=name)


def test_login_name_from_issuer() -> None:
    """Derived names are file-safe."""
    assert login_name("https://accounts.example.com") == "accounts.example.com"
    assert login_name("https://idp.example:8443/realms/x y") == "idp.example-8443-realms-x-y"


async def test_an_issuer_that_cannot_be_reached_is_said_once(
    respx_mock: respx.MockRouter,
) -> None:
    """A host that refuses connections is one short reason, not one per well-known URL
    (the second would fail the same way, so it is not tried)."""
    first = respx_mock.get(well_known_urls(ISSUER)[0])
    first.side_effect = httpx.ConnectError("All connection attempts failed")
    second = respx_mock.get(well_known_urls(ISSUER)[1])
    with pytest.raises(DiscoveryError) as caught:
        await ProviderConfig.discover(ISSUER, client_id="cid")
    assert str(caught.value) == (
        f"cannot reach {ISSUER} (ConnectError: All connection attempts failed); "
        "check the issuer URL and your network"
    )
    assert second.call_count == 0
