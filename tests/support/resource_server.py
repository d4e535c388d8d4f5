"""A protected resource on loopback for the MCP-profile tests (aiohttp, 127.0.0.1): ``/mcp``
answers 401 with a Bearer challenge naming its RFC 9728 metadata unless the request carries
a JWT access token of the test provider whose ``aud`` is this resource (verified against the
provider's JWKS with PyJWT); ``/mcp/write`` also needs the ``files:write`` scope (else 403
``insufficient_scope``); the metadata is served at the path-inserted well-known URI."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class ResourceServer:
    """See the module docstring. ``advertise`` overrides the ``resource`` the metadata
    names (a mix-up); ``scope`` is the challenge's."""

    def __init__(
        self,
        issuer: str,
        *,
        scope: str = "files:read",
        advertise: str | None = None,
        server: str | None = None,
    ):
        self.issuer = issuer
        self.server = server or issuer  # the authorization server the metadata names
        self.scope = scope
        self.advertise = advertise
        self.base = ""
        self.accepted: list[dict[str, Any]] = []  # the claims of every token let in
        self._keys: jwt.PyJWKSet | None = None

    @property
    def resource(self) -> str:
        return f"{self.base}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/oauth-protected-resource/mcp"

    async def _write(self, request: web.Request) -> web.Response:
        """Needs ``files:write`` besides a valid token: else 403 insufficient_scope."""
        answer = await self._mcp(request)
        if answer.status != 200 or "files:write" in str(self.accepted[-1].get("scope")).split():
            return answer
        challenge = (
            'Bearer error="insufficient_scope", scope="files:read files:write", '
            f'resource_metadata="{self.metadata_url}"'
        )
        return web.Response(status=403, headers={"WWW-Authenticate": challenge})

    async def _mcp(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and self._keys is not None:
            token = header.removeprefix("Bearer ")
            try:
                kid = jwt.get_unverified_header(token).get("kid")
                key = next(k for k in self._keys.keys if k.key_id == kid)
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=["RS256", "PS256", "ES256", "EdDSA"],
                    audience=self.resource,
                    issuer=self.issuer,
                )
            except (jwt.PyJWTError, StopIteration):
                pass
            else:
                self.accepted.append(claims)
                return web.json_response({"sub": claims["sub"], "scope": claims.get("scope")})
        challenge = f'Bearer resource_metadata="{self.metadata_url}", scope="{self.scope}"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resource": self.advertise or self.resource,
                "authorization_servers": [self.server],
                "scopes_supported": ["files:read", "files:write"],
                "bearer_methods_supported": ["header"],
            }
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ResourceServer]:
        async with httpx.AsyncClient(trust_env=False) as client:
            configuration = (
                await client.get(f"{self.issuer}/.well-known/openid-configuration")
            ).json()
            self._keys = jwt.PyJWKSet.from_dict(
                (await client.get(configuration["jwks_uri"])).json()
            )
        app = web.Application()
        app.router.add_get("/mcp", self._mcp)
        app.router.add_get("/mcp/write", self._write)
        app.router.add_get("/.well-known/oauth-protected-resource/mcp", self._metadata)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            await runner.cleanup()
