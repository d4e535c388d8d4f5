"""The smallest useful proxy handler: add a valid token to every forwarded request.

    vandamme-oauth login chatgpt
    python examples/proxy_token.py https://chatgpt.com/backend-api --port 8080
    python examples/proxy_token.py https://api.example.com --login work   # any stored login

Each request gets ``Authorization: Bearer <token>`` and, for ChatGPT, the rest of the
backend's headers (``chatgpt.backend_headers``: ``ChatGPT-Account-ID``, ``originator``...).
If the upstream answers 401, the manager is told (it refreshes once, however many requests
report it) and the request is retried once. This version reads bodies into memory;
examples/chatgpt_proxy.py streams them.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from vandamme_oauth import OAuthError, TokenManager, open_login
from vandamme_oauth.providers import chatgpt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

MANAGER = web.AppKey("manager", TokenManager)
CLIENT = web.AppKey("client", httpx.AsyncClient)
UPSTREAM = web.AppKey("upstream", str)
KEEP = {"content-type", "accept", "openai-beta", "session_id"}


async def forward(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    body = await request.read()
    url = request.app[UPSTREAM].rstrip("/") + request.rel_url.path_qs
    headers = {k: v for k, v in request.headers.items() if k.lower() in KEEP}
    for attempt in (1, 2):
        auth = await manager.get_auth_data()
        if chatgpt.is_chatgpt(manager.provider):  # the backend's whole header set
            headers.update(chatgpt.backend_headers(auth, session_id=headers.get("session_id")))
        else:
            headers["Authorization"] = f"Bearer {auth.access_token}"
        upstream = await request.app[CLIENT].request(
            request.method, url, headers=headers, content=body
        )
        if upstream.status_code != 401 or attempt == 2:
            break
        manager.report_unauthorized(auth.access_token)
    return web.Response(
        status=upstream.status_code,
        body=upstream.content,  # decoded by httpx: no Content-Encoding is relayed
        content_type=upstream.headers.get("content-type", "application/octet-stream").split(";")[0],
    )


def make_app(manager: TokenManager, upstream: str) -> web.Application:
    """Every path and method is forwarded to ``upstream``."""
    app = web.Application()
    app[MANAGER] = manager
    app[UPSTREAM] = upstream

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=120) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(client_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A proxy that adds a stored login's token.")
    parser.add_argument("upstream", nargs="?", default="https://chatgpt.com/backend-api")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--login", help="a stored login's name (default: chatgpt)")
    parser.add_argument("--home", help="where logins are stored (default: the CLI's folder)")
    args = parser.parse_args(argv)
    provider, storage = await open_login(args.login, home=args.home)
    async with TokenManager(provider, storage) as manager:
        await manager.get_access_token()  # no usable login: say so now, not per request
        runner = web.AppRunner(make_app(manager, args.upstream))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"Proxying http://127.0.0.1:{port} -> {args.upstream} (Ctrl-C stops)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OAuthError as exc:  # no login stored, a refused refresh...: one line, no traceback
        raise SystemExit(f"proxy_token: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
