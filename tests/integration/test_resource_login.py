"""A login that starts from a protected resource (the MCP authorization profile), end to end
against the real oidc-provider and a loopback resource server: discovery from the 401, one
dynamic registration, ``resource`` on the authorization request, the exchange and the
refresh, and the resource accepting the token before and after a refresh."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest
import trustme

from tests.integration.conftest import scripted_login
from tests.integration.test_cli import _cli, _cli_login, _spawn_cli
from tests.support.metadata_document import serve_metadata_document
from tests.support.provider import RunningProvider, run_provider
from tests.support.resource_server import ResourceServer
from tests.support.user_agent import run_browser, run_device_browser
from vandamme_oauth import (
    DiscoveryError,
    InMemoryAuthStorage,
    TokenManager,
    provider_for_resource,
)
from vandamme_oauth._registration import DEVICE_GRANT

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


async def call(resource: ResourceServer, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(resource.resource, headers=headers)


async def test_a_login_from_a_resources_401_gets_tokens_bound_to_it(
    oidc_provider: RunningProvider,
) -> None:
    """From the resource URL alone: a registered client, the challenge's scope (plus
    offline_access), a login whose access token is a JWT for that resource, accepted by it,
    and a refresh (naming the resource again) whose token it accepts too."""
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        assert (await call(resource, None)).status_code == 401
        provider, registration = await provider_for_resource(resource.resource)
        assert registration is not None
        assert provider.client_id == registration.client_id != oidc_provider.client_id
        assert provider.resource == resource.resource
        assert provider.scopes == ("files:read", "offline_access")
        assert provider.issuer == oidc_provider.issuer
        storage = InMemoryAuthStorage()
        login = await scripted_login(provider, storage)
        assert ("resource", resource.resource) in httpx.URL(login.url).params.multi_items()
        first = login.auth.access_token
        assert jwt.decode(first, options={"verify_signature": False})["aud"] == resource.resource
        assert (await call(resource, first)).status_code == 200
        async with TokenManager(provider, storage) as manager:
            refreshed = await manager.refresh()
        assert refreshed.access_token != first
        assert (await call(resource, refreshed.access_token)).status_code == 200
        assert [claims["sub"] for claims in resource.accepted] == ["alice", "alice"]
        assert all("files:read" in claims["scope"].split() for claims in resource.accepted)


async def test_a_later_login_reuses_the_registration(oidc_provider: RunningProvider) -> None:
    """The registration of the first login is given back: no new client is registered."""
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        _, registration = await provider_for_resource(resource.resource)
        assert registration is not None
        again, reused = await provider_for_resource(resource.resource, registration=registration)
        assert reused is registration
        assert again.client_id == registration.client_id
        given, none = await provider_for_resource(
            resource.resource, client_id=oidc_provider.client_id
        )
        assert (given.client_id, none) == (oidc_provider.client_id, None)


async def test_a_server_that_forgot_the_client_gets_one_new_registration(
    oidc_provider: RunningProvider,
) -> None:
    """The client was deleted at the provider (RFC 7592 DELETE, as an administrator would):
    the next login registers once more, and the new client's login works."""
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        _, old = await provider_for_resource(resource.resource)
        assert old is not None
        assert old.registration_client_uri is not None
        async with httpx.AsyncClient(trust_env=False) as admin:
            deleted = await admin.delete(
                old.registration_client_uri,
                headers={"Authorization": f"Bearer {old.registration_access_token}"},
            )
        assert deleted.status_code == 204
        provider, new = await provider_for_resource(resource.resource, registration=old)
        assert new is not None
        assert new.client_id != old.client_id
        assert provider.client_id == new.client_id
        login = await scripted_login(provider, InMemoryAuthStorage(), login="bob")
        assert (await call(resource, login.auth.access_token)).status_code == 200


async def test_metadata_naming_another_resource_is_refused(
    oidc_provider: RunningProvider,
) -> None:
    """RFC 9728 section 3.3: the metadata's resource must be the one we asked for."""
    async with ResourceServer(
        oidc_provider.issuer, advertise="http://127.0.0.1:9/elsewhere"
    ).running() as resource:
        with pytest.raises(DiscoveryError, match=r"RFC 9728 section 3\.3"):
            await provider_for_resource(resource.resource)


async def test_an_authorization_server_named_with_a_root_slash_is_the_same_server(
    oidc_provider: RunningProvider,
) -> None:
    """Resource metadata naming ``http://host:port/`` for an issuer ``http://host:port``
    (as some SDKs write it) is that issuer; another path is another issuer, refused."""
    root = oidc_provider.issuer + "/"
    async with ResourceServer(oidc_provider.issuer, server=root).running() as resource:
        provider, _ = await provider_for_resource(resource.resource)
        assert provider.issuer == oidc_provider.issuer
    other = oidc_provider.issuer + "/tenant"
    async with ResourceServer(oidc_provider.issuer, server=other).running() as resource:
        with pytest.raises(DiscoveryError, match="no usable metadata"):
            await provider_for_resource(resource.resource)


async def test_a_client_metadata_document_the_server_does_not_accept_gives_way_to_registration(
    oidc_provider: RunningProvider,
) -> None:
    """A Client ID Metadata Document URL, at a server that does not advertise support for
    them: the next way in the order, a registration, is taken."""
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        provider, registration = await provider_for_resource(
            resource.resource, client_metadata_url="https://app.example/client.json"
        )
    assert registration is not None
    assert provider.client_id == registration.client_id


async def test_the_cli_logs_in_to_a_resource_and_serves_its_token(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login --resource URL --no-browser`: one registration kept beside the profile (0600),
    exit 0; `status` shows the resource; `token NAME` prints a token the resource accepts,
    and once it expired, a refreshed one (for the resource) it accepts too; a second
    `login NAME` reuses the registration; `logout NAME` deletes it all."""
    home = tmp_path / "home"
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        code, out, err = await _cli_login(
            oidc_provider, home, "--resource", resource.resource, "--name", "files"
        )
        assert code == 0, err
        assert "Registered the client " in err
        assert "Logged in to files as alice" in out
        registration = home / "files.registration"
        assert registration.stat().st_mode & 0o777 == 0o600
        client_id = json.loads(registration.read_text())["client_id"]

        code, out, err = await _cli("status", "files", home=home)
        assert code == 0, err
        assert f"  resource:    {resource.resource}" in out
        assert "registration_access_token" not in out

        code, out, err = await _cli("token", "files", home=home)
        assert code == 0, err
        token = out.strip().splitlines()[-1]
        assert (await call(resource, token)).status_code == 200

        # The stored token expired: `token` refreshes it, naming the resource again.
        stored = json.loads((home / "files.json").read_text())
        stored["expires_at"] = "2001-01-01T00:00:00Z"
        (home / "files.json").write_text(json.dumps(stored))
        refreshes = oidc_provider.stats()["refresh_token"]
        code, out, err = await _cli("token", "files", home=home)
        assert code == 0, err
        fresh = out.strip().splitlines()[-1]
        assert fresh != token
        assert oidc_provider.stats()["refresh_token"] == refreshes + 1
        claims = jwt.decode(fresh, options={"verify_signature": False})
        assert claims["aud"] == resource.resource
        assert (await call(resource, fresh)).status_code == 200

        code, out, err = await _cli_login(oidc_provider, home, "files")
        assert code == 0, err
        assert "Registered the client" not in err
        assert json.loads(registration.read_text())["client_id"] == client_id

        code, out, err = await _cli("logout", "files", home=home)
        assert code == 0, err
        assert not registration.exists()
        assert not (home / "files.provider.json").exists()


async def test_the_cli_refuses_resource_with_issuer(tmp_path: Path) -> None:
    code, _, err = await _cli(
        "login", "--resource", "http://127.0.0.1:9/mcp", "--issuer", "http://x", home=tmp_path
    )
    assert code == 2
    assert "--resource finds its own issuer" in err


async def test_a_client_forgotten_during_the_login_is_registered_again_once(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login files` reuses its registration; the provider forgets that client between the
    browser's consent and the code exchange (its exchange answers invalid_client): the CLI
    registers once more, asks for one more sign-in, and stores the login."""
    home = tmp_path / "home"
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        code, _, err = await _cli_login(
            oidc_provider, home, "--resource", resource.resource, "--name", "files"
        )
        assert code == 0, err
        old = json.loads((home / "files.registration").read_text())
        process = await _spawn_cli("login", "files", "--no-browser", "--timeout", "60", home=home)
        first = await _printed_url(process)
        consented = await run_browser(first, follow_callback=False)
        async with httpx.AsyncClient(trust_env=False) as admin:
            deleted = await admin.delete(
                old["registration_client_uri"],
                headers={"Authorization": f"Bearer {old['registration_access_token']}"},
            )
            assert deleted.status_code == 204
            await admin.get(consented.callback_url)
        second = await _printed_url(process)
        await run_browser(second)
        _, err_bytes = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, err_bytes.decode()
        assert "no longer knows the client" in err_bytes.decode()
        new = json.loads((home / "files.registration").read_text())
        assert new["client_id"] != old["client_id"]
        code, out_text, err = await _cli("token", "files", home=home)
        assert code == 0, err
        assert (await call(resource, out_text.strip().splitlines()[-1])).status_code == 200


async def _printed_url(process: asyncio.subprocess.Process) -> str:
    """The next authorization URL the CLI prints."""
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, "the CLI exited before printing a URL"
        if line.strip().startswith("http"):
            return line.strip()


async def _device_login(home: Path, *args: str) -> tuple[int, str, str]:
    """`login ARGS --device`, with the code entered at the provider as a person would."""
    process = await _spawn_cli("login", *args, "--device", "--timeout", "60", home=home)
    assert process.stdout is not None
    opened = ""
    while "enter the code" not in opened:
        opened = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert opened, "the CLI exited before showing a code"
    code = ""
    while not code:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode()
        assert line, "the CLI exited before showing a code"
        code = line.strip()
    await run_device_browser(opened.split("open ", 1)[1].split()[0], code)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, opened + code + "\n" + out.decode(), err.decode()


async def test_a_device_login_to_a_resource_registers_for_the_device_grant(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """`login --resource URL --device`: a client registered with the device grant, a token
    for the resource (device authorization and token requests both name it), kept, served
    by `token` and accepted by the resource. A registration made for a browser login lacks
    the grant: `login NAME --device` registers once more, with it."""
    home = tmp_path / "home"
    async with ResourceServer(oidc_provider.issuer).running() as resource:
        code, out, err = await _device_login(
            home, "--resource", resource.resource, "--name", "files"
        )
        assert code == 0, err
        assert "Logged in to files as alice" in out
        registration = json.loads((home / "files.registration").read_text())
        assert DEVICE_GRANT in registration["grant_types"]
        stored = json.loads((home / "files.json").read_text())["tokens"]["access_token"]
        claims = jwt.decode(stored, options={"verify_signature": False})
        assert claims["aud"] == resource.resource
        code, out, err = await _cli("token", "files", home=home)
        assert code == 0, err
        assert (await call(resource, out.strip().splitlines()[-1])).status_code == 200

        code, _, err = await _cli_login(
            oidc_provider, home, "--resource", resource.resource, "--name", "browser"
        )
        assert code == 0, err
        browser = json.loads((home / "browser.registration").read_text())
        assert DEVICE_GRANT not in browser["grant_types"]
        code, out, err = await _device_login(home, "browser")
        assert code == 0, err
        assert "Registered the client" in err
        again = json.loads((home / "browser.registration").read_text())
        assert again["client_id"] != browser["client_id"]
        assert DEVICE_GRANT in again["grant_types"]
        code, out, err = await _device_login(home, "browser")
        assert code == 0, err
        assert "Registered the client" not in err  # now it allows the grant: reused


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cimd_provider(
    tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProvider]:
    """A provider that accepts Client ID Metadata Documents, trusting the tests' CA."""
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(pem))
    env = {"CLIENT_ID_METADATA_DOCUMENTS": "1", "NODE_EXTRA_CA_CERTS": str(pem)}
    with run_provider(env=env) as running:
        yield running


async def test_a_client_metadata_document_is_the_client_id_end_to_end(
    cimd_provider: RunningProvider, tls_ca: trustme.CA
) -> None:
    """A server that advertises Client ID Metadata Documents: the document's URL is the
    client id (nothing is registered), the provider fetches the document, and the login,
    its token for the resource and a refresh all work."""
    async with (
        serve_metadata_document(tls_ca) as document,
        ResourceServer(cimd_provider.issuer).running() as resource,
    ):
        provider, registration = await provider_for_resource(
            resource.resource, client_metadata_url=document.url
        )
        assert registration is None
        assert provider.client_id == document.url
        storage = InMemoryAuthStorage()
        login = await scripted_login(provider, storage)
        assert document.fetches >= 1
        assert ("client_id", document.url) in httpx.URL(login.url).params.multi_items()
        assert (await call(resource, login.auth.access_token)).status_code == 200
        async with TokenManager(provider, storage) as manager:
            refreshed = await manager.refresh()
        assert (await call(resource, refreshed.access_token)).status_code == 200


async def test_the_cli_logs_in_with_a_client_metadata_document(
    cimd_provider: RunningProvider, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    """`login --resource URL --client-metadata-url DOC`: no registration is made or kept;
    `token` serves a token the resource accepts."""
    home = tmp_path / "home"
    async with (
        serve_metadata_document(tls_ca) as document,
        ResourceServer(cimd_provider.issuer).running() as resource,
    ):
        code, out, err = await _cli_login(
            cimd_provider,
            home,
            *("--resource", resource.resource, "--client-metadata-url", document.url),
            *("--name", "files"),
        )
        assert code == 0, err
        assert "Registered" not in err
        assert not (home / "files.registration").exists()
        saved = json.loads((home / "files.provider.json").read_text())
        assert saved["client_id"] == document.url
        assert document.fetches >= 1
        code, out, err = await _cli("token", "files", home=home)
        assert code == 0, err
        assert (await call(resource, out.strip().splitlines()[-1])).status_code == 200
