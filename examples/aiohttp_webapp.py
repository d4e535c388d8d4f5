"""An aiohttp web app that signs its users in with an OpenID provider and keeps one login
per user, served by a LoginPool (in Redis with ``--redis``, else in memory).

    python examples/aiohttp_webapp.py --issuer https://idp.example --client-id my-app \
        --redis redis://127.0.0.1:6379/0

Register ``http://127.0.0.1:8000/auth/callback`` as the client's redirect URI, then open
``/login?user=alice``; ``/me?user=alice`` uses alice's access token (refreshed as needed)
and ``/health`` lists every login's state.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket

from aiohttp import web

from vandamme_oauth import (
    AuthData,
    AuthStorage,
    InMemoryAuthStorage,
    LoginPool,
    NotAuthenticatedError,
    OAuthError,
    ProviderConfig,
    WebLogin,
)
from vandamme_oauth.integrations.aiohttp import setup_login

LOGINS = web.AppKey("logins", dict[str, AuthStorage])
POOL = web.AppKey("pool", LoginPool)


def make_app(
    provider: ProviderConfig, *, base_url: str, secret: bytes, redis_url: str | None = None
) -> web.Application:
    """The app: /login?user=NAME starts a login, /me?user=NAME uses it, /health."""
    app = web.Application()
    logins: dict[str, AuthStorage] = {}

    def storage_for(user: str) -> AuthStorage:
        if user not in logins:
            if redis_url is None:
                logins[user] = InMemoryAuthStorage()
            else:  # storages from one URL share one client and one pub/sub connection
                from vandamme_oauth import RedisAuthStorage

                logins[user] = RedisAuthStorage.from_url(redis_url, key=f"webapp:{user}")
        return logins[user]

    app[LOGINS] = logins
    # One manager per user, made on first use and closed after ten idle minutes.
    pool = app[POOL] = LoginPool(provider, storage_for, idle_timeout=600)
    login = WebLogin(
        provider, redirect_uri=f"{base_url}/auth/callback", secret=secret, storage_for=storage_for
    )

    async def user_key(request: web.Request) -> str:
        # A real app takes this from its own session; a query parameter keeps this short.
        return request.query.get("user", "anonymous")

    async def signed_in(request: web.Request, user: str, auth: AuthData) -> web.StreamResponse:
        return web.Response(text=f"Signed in {user} as {auth.email or auth.account_id}.")

    async def me(request: web.Request) -> web.StreamResponse:
        user = await user_key(request)
        try:
            auth = await pool.get_auth_data(user)  # a valid token, refreshed when due
        except NotAuthenticatedError:
            return web.Response(status=401, text=f"{user} is not signed in: /login?user={user}")
        # A real app calls its API here with {"Authorization": f"Bearer {auth.access_token}"}.
        return web.Response(text=f"{user} holds a valid access token for {auth.account_id}.")

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({name: state.value for name, state in pool.health().items()})

    async def close(app: web.Application) -> None:
        await pool.aclose()
        await login.aclose()
        for storage in logins.values():
            if hasattr(storage, "aclose"):
                await storage.aclose()

    setup_login(app, login, user_key=user_key, on_success=signed_in)
    app.router.add_get("/me", me)
    app.router.add_get("/health", health)
    app.on_cleanup.append(close)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--redis", metavar="URL", help="keep the logins in Redis/Valkey")
    args = parser.parse_args()
    provider = await ProviderConfig.discover(args.issuer, client_id=args.client_id)
    # Listen first, so that the redirect URI names the real port (also with --port 0).
    sock = socket.create_server(("127.0.0.1", args.port))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(
        provider, base_url=base_url, secret=secrets.token_bytes(32), redis_url=args.redis
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"Open {base_url}/login?user=alice (register {base_url}/auth/callback)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OAuthError as exc:  # discovery refused...: one line, no traceback
        raise SystemExit(f"aiohttp_webapp: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
