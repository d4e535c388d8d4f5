"""The smallest useful proxy handler: add a valid token to every forwarded request.

    vandamme-oauth login chatgpt
    python examples/proxy_token.py https://chatgpt.com/backend-api

Each request gets ``Authorization: Bearer <token>`` and, when the login has an account id,
``ChatGPT-Account-ID``. If the upstream answers 401, the manager is told (it refreshes once,
however many requests report it) and the request is retried once. This version reads bodies
into memory; examples/chatgpt_proxy.py streams them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from vandamme_oauth import FileSystemAuthStorage, ProviderConfig, TokenManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
        headers["Authorization"] = f"Bearer {auth.access_token}"
        if auth.account_id:
            headers["ChatGPT-Account-ID"] = auth.account_id
        upstream = await request.app[CLIENT].request(
            request.method, url, headers=headers, content=body
        )
        if upstream.status_code != 401 or attempt == 2:
            break
        manager.report_unauthorized(auth.access_token)
    return web.Response(
        status=upstream.status_code,
        body=upstream.content,
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


if __name__ == "__main__":
    provider = ProviderConfig.chatgpt()
    manager = TokenManager(provider, FileSystemAuthStorage(name=provider.name))
    app = make_app(manager, sys.argv[1] if len(sys.argv) > 1 else "https://chatgpt.com/backend-api")
    app.on_cleanup.append(lambda _: manager.aclose())
    web.run_app(app, host="127.0.0.1", port=8080)
