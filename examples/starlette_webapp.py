"""A Starlette app that signs its users in (pip install "vandamme-oauth[starlette]" uvicorn).

    ISSUER=https://idp.example CLIENT_ID=my-app uvicorn examples.starlette_webapp:app
    ISSUER=https://idp.example CLIENT_ID=my-app python examples/starlette_webapp.py

Settings come from the environment: ``ISSUER`` and ``CLIENT_ID`` (required), ``BASE_URL``
(where users reach the app, default ``http://127.0.0.1:8000``; register
``$BASE_URL/auth/callback`` with the provider) and ``LOGIN_COOKIE_SECRET`` (at least 32
bytes; default: a random one, so logins in progress do not survive a restart) and
``REDIS_URL`` (keep the logins in Redis/Valkey; default: in memory).
Then open ``$BASE_URL/login?user=alice``; ``/me?user=alice`` uses alice's access token
through a LoginPool (refreshed as needed), and ``/health`` lists every login's state.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING, Any

from vandamme_oauth import (
    AuthData,
    AuthStorage,
    InMemoryAuthStorage,
    LoginPool,
    NotAuthenticatedError,
    ProviderConfig,
    WebLogin,
)

try:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from vandamme_oauth.integrations.starlette import login_routes
except ImportError:
    raise SystemExit(
        "starlette_webapp needs Starlette: pip install 'vandamme-oauth[starlette]' uvicorn"
    ) from None

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request


def make_app(
    provider: ProviderConfig,
    *,
    base_url: str,
    secret: str | bytes,
    redis_url: str | None = None,
) -> tuple[Starlette, dict[str, AuthStorage]]:
    """The app and its per-user logins: /login?user=NAME starts a login, /me?user=NAME
    uses it, /health lists them."""
    logins: dict[str, AuthStorage] = {}

    def storage_for(user: str) -> AuthStorage:
        if user not in logins:
            if redis_url is None:
                logins[user] = InMemoryAuthStorage()
            else:  # storages from one URL share one client and one pub/sub connection
                from vandamme_oauth import RedisAuthStorage

                logins[user] = RedisAuthStorage.from_url(redis_url, key=f"webapp:{user}")
        return logins[user]

    # One manager per user, made on first use and closed after ten idle minutes.
    pool = LoginPool(provider, storage_for, idle_timeout=600)
    login = WebLogin(
        provider, redirect_uri=f"{base_url}/auth/callback", secret=secret, storage_for=storage_for
    )

    async def user_key(request: Request) -> str:
        # A real app takes this from its own session; a query parameter keeps this short.
        return request.query_params.get("user", "anonymous")

    async def signed_in(request: Request, user: str, auth: AuthData) -> Response:
        return PlainTextResponse(f"Signed in {user} as {auth.email or auth.account_id}.")

    async def me(request: Request) -> Response:
        user = await user_key(request)
        try:
            auth = await pool.get_auth_data(user)  # a valid token, refreshed when due
        except NotAuthenticatedError:
            return PlainTextResponse(f"{user} is not signed in: /login?user={user}", 401)
        # A real app calls its API here with {"Authorization": f"Bearer {auth.access_token}"}.
        return PlainTextResponse(f"{user} holds a valid access token for {auth.account_id}.")

    async def health(request: Request) -> Response:
        return JSONResponse({name: state.value for name, state in pool.health().items()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await pool.aclose()
        await login.aclose()
        for storage in logins.values():
            if hasattr(storage, "aclose"):
                await storage.aclose()

    routes = [
        *login_routes(login, user_key=user_key, on_success=signed_in),
        Route("/me", me),
        Route("/health", health),
    ]
    return Starlette(routes=routes, lifespan=lifespan), logins


def app_from_environment() -> Starlette:
    """The app ``uvicorn examples.starlette_webapp:app`` serves, configured by the
    environment; the provider is discovered when the server starts."""
    missing = [name for name in ("ISSUER", "CLIENT_ID") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"starlette_webapp: set {' and '.join(missing)} (see the docstring)")
    issuer, client_id = os.environ["ISSUER"], os.environ["CLIENT_ID"]
    base_url = os.environ.get("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    secret = os.environ.get("LOGIN_COOKIE_SECRET") or secrets.token_bytes(32)

    @contextlib.asynccontextmanager
    async def lifespan(outer: Starlette) -> AsyncIterator[None]:
        provider = await ProviderConfig.discover(issuer, client_id=client_id)
        inner, _ = make_app(
            provider, base_url=base_url, secret=secret, redis_url=os.environ.get("REDIS_URL")
        )
        outer.mount("/", inner)
        async with inner.router.lifespan_context(inner):
            yield

    return Starlette(lifespan=lifespan)


def __getattr__(name: str) -> Any:
    # `app` is built when a server asks for it, so importing this module reads no settings.
    if name == "app":
        return app_from_environment()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    try:
        import uvicorn
    except ImportError:
        raise SystemExit("starlette_webapp needs uvicorn to serve: pip install uvicorn") from None
    uvicorn.run("starlette_webapp:app", app_dir=os.path.dirname(__file__) or ".")
