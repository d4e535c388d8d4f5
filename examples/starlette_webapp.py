"""A Starlette app that signs its users in (pip install "vandamme-oauth[starlette]" uvicorn).

uvicorn examples.starlette_webapp:app   # after setting ISSUER and CLIENT_ID below
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response

from vandamme_oauth import AuthData, InMemoryAuthStorage, ProviderConfig, WebLogin
from vandamme_oauth.integrations.starlette import login_routes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request


def make_app(
    provider: ProviderConfig, *, base_url: str, secret: bytes
) -> tuple[Starlette, dict[str, InMemoryAuthStorage]]:
    """The app and its per-user logins: /login?user=NAME starts a login."""
    logins: dict[str, InMemoryAuthStorage] = {}
    login = WebLogin(
        provider,
        redirect_uri=f"{base_url}/auth/callback",
        secret=secret,
        storage_for=lambda user: logins.setdefault(user, InMemoryAuthStorage()),
    )

    async def user_key(request: Request) -> str:
        return request.query_params.get("user", "anonymous")

    async def signed_in(request: Request, user: str, auth: AuthData) -> Response:
        return PlainTextResponse(f"Signed in {user} as {auth.email or auth.account_id}.")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await login.aclose()

    routes = login_routes(login, user_key=user_key, on_success=signed_in)
    return Starlette(routes=routes, lifespan=lifespan), logins
