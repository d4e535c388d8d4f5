"""An aiohttp web app that signs its users in with an OpenID provider and keeps one login
per user (here in memory; use RedisAuthStorage with a per-user key in production).

    python examples/aiohttp_webapp.py --issuer https://idp.example --client-id my-app

Register ``http://127.0.0.1:8000/auth/callback`` as the client's redirect URI.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket

from aiohttp import web

from vandamme_oauth import AuthData, InMemoryAuthStorage, OAuthError, ProviderConfig, WebLogin
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
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args()
    provider = await ProviderConfig.discover(args.issuer, client_id=args.client_id)
    # Listen first, so that the redirect URI names the real port (also with --port 0).
    sock = socket.create_server(("127.0.0.1", args.port))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(provider, base_url=base_url, secret=secrets.token_bytes(32))
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
