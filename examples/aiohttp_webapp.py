"""An aiohttp web app that signs its users in with an OpenID provider and keeps one login
per user (here in memory; use RedisAuthStorage with a per-user key in production).

    python examples/aiohttp_webapp.py --issuer https://idp.example --client-id my-app
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

from aiohttp import web

from vandamme_oauth import AuthData, InMemoryAuthStorage, ProviderConfig, WebLogin
from vandamme_oauth.integrations.aiohttp import setup_login

LOGINS = web.AppKey("logins", dict[str, InMemoryAuthStorage])


def make_app(provider: ProviderConfig, *, base_url: str, secret: bytes) -> web.Application:
    """The app: /login?user=NAME starts a login; / shows who is signed in."""
    app = web.Application()
    logins: dict[str, InMemoryAuthStorage] = {}
    app[LOGINS] = logins
    login = WebLogin(
        provider,
        redirect_uri=f"{base_url}/auth/callback",
        secret=secret,
        storage_for=lambda user: logins.setdefault(user, InMemoryAuthStorage()),
    )

    async def user_key(request: web.Request) -> str:
        # A real app takes this from its own session; a query parameter keeps this short.
        return request.query.get("user", "anonymous")

    async def signed_in(request: web.Request, user: str, auth: AuthData) -> web.StreamResponse:
        return web.Response(text=f"Signed in {user} as {auth.email or auth.account_id}.")

    async def close(app: web.Application) -> None:
        await login.aclose()

    setup_login(app, login, user_key=user_key, on_success=signed_in)
    app.on_cleanup.append(close)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    provider = await ProviderConfig.discover(args.issuer, client_id=args.client_id)
    app = make_app(
        provider, base_url=f"http://127.0.0.1:{args.port}", secret=secrets.token_bytes(32)
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"Open http://127.0.0.1:{args.port}/login?user=alice")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
