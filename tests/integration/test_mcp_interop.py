"""Interop with an MCP stack nobody here wrote: the ``mcp`` SDK's streamable-HTTP client,
authenticated by our httpx2 adapter, calls a tool on a server built with the SDK's own
``MCPServer`` (its bearer middleware and RFC 9728 metadata, with a token verifier checking
the test provider's JWTs), all on loopback. The adapter's login hook signs in from the
server's 401; the tool then runs, and runs again after a refresh."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import jwt
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings

from tests.integration.conftest import scripted_login
from tests.integration.test_cli import _cli_login
from tests.integration.test_examples import example, finish
from vandamme_oauth import InMemoryAuthStorage, TokenManager, provider_for_resource
from vandamme_oauth.integrations.httpx2 import TokenManagerAuth

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.support.provider import RunningProvider
    from vandamme_oauth import ProviderConfig
    from vandamme_oauth.integrations.httpx2 import LoginNeeded

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


class ProviderJWTs:
    """The SDK's TokenVerifier, for the test provider's JWT access tokens (PyJWT)."""

    def __init__(self, issuer: str, resource: str, keys: jwt.PyJWKSet) -> None:
        self.issuer, self.resource, self.keys = issuer, resource, keys

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next(k for k in self.keys.keys if k.key_id == kid)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256", "PS256", "ES256"], audience=self.resource,
                issuer=self.issuer,
            )  # fmt: skip
        except (jwt.PyJWTError, StopIteration):
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
            subject=str(claims["sub"]),
            claims={"iss": claims["iss"]},
        )


@contextlib.asynccontextmanager
async def mcp_server(issuer: str) -> AsyncIterator[str]:
    """An MCPServer with one tool, ``whoami``, behind the SDK's bearer auth; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    async with httpx.AsyncClient(trust_env=False) as client:
        configuration = (await client.get(f"{issuer}/.well-known/openid-configuration")).json()
        keys = jwt.PyJWKSet.from_dict((await client.get(configuration["jwks_uri"])).json())
    server = MCPServer(
        "files",
        token_verifier=ProviderJWTs(issuer, url, keys),
        auth=AuthSettings.model_validate(
            {
                "issuer_url": issuer,
                "resource_server_url": url,
                "required_scopes": ["files:read"],
                "validate_token_resource": True,
            }
        ),
    )

    @server.tool()
    def whoami() -> str:
        """The signed-in user's subject."""
        from mcp.server.auth.middleware.auth_context import get_access_token

        token = get_access_token()
        return token.subject if token is not None and token.subject else "nobody"

    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", access_log=False)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    try:
        yield url
    finally:
        running.should_exit = True
        await task
        sock.close()


async def test_the_mcp_sdk_client_calls_a_tool_through_our_adapter(
    oidc_provider: RunningProvider,
) -> None:
    async with mcp_server(oidc_provider.issuer) as url:
        provider, registration = await provider_for_resource(url)
        assert registration is not None
        storage = InMemoryAuthStorage()
        logins: list[LoginNeeded] = []

        async def login(needed: LoginNeeded) -> None:
            logins.append(needed)
            chosen: ProviderConfig = provider.replace(scopes=needed.scopes or provider.scopes)
            await scripted_login(chosen, storage, login="carol")

        async with TokenManager(provider, storage) as manager:
            http = httpx2.AsyncClient(auth=TokenManagerAuth(manager, login=login))
            async with http, Client(streamable_http_client(url, http_client=http)) as client:
                first = await client.call_tool("whoami", {})
                await manager.refresh()
                second = await client.call_tool("whoami", {})
        assert [c.text for c in first.content if hasattr(c, "text")] == ["carol"]
        assert [c.text for c in second.content if hasattr(c, "text")] == ["carol"]
        assert len(logins) == 1
        assert logins[0].resource == url


async def test_the_readme_mcp_commands_run_as_written(
    oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """The README's two commands: `login --resource URL --name files`, then
    `examples/mcp_client.py files whoami` prints the signed-in user."""
    home = tmp_path / "home"
    async with mcp_server(oidc_provider.issuer) as url:
        code, _, err = await _cli_login(
            oidc_provider, home, "--resource", url, "--name", "files", login="dave"
        )
        assert code == 0, err
        code, out, err = await finish(
            await example("mcp_client", "files", "whoami", "--home", str(home))
        )
    assert (code, out, err) == (0, "dave\n", "")
