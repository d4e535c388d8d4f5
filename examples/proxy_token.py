"""A tiny aiohttp proxy that adds a valid token to every request it forwards.

Each request gets ``Authorization: Bearer <token>`` and, when the login has an account id,
``ChatGPT-Account-ID``. If the upstream answers 401, the manager is told, refreshes once, and
the request is retried once. Bodies stream in both directions.

    vandamme-oauth login chatgpt
    python examples/proxy_token.py --upstream https://chatgpt.com/backend-api --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from vandamme_oauth import FileSystemAuthStorage, ProviderConfig, TokenManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

MANAGER = web.AppKey("manager", TokenManager)
CLIENT = web.AppKey("client", httpx.AsyncClient)
UPSTREAM = web.AppKey("upstream", str)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "proxy-authorization",
    "authorization",
    "content-length",
}


async def forward(request: web.Request) -> web.StreamResponse:
    manager, client = request.app[MANAGER], request.app[CLIENT]
    body = await request.read()  # kept so a 401 can be retried once
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    url = request.app[UPSTREAM].rstrip("/") + request.rel_url.path_qs
    for attempt in range(2):
        auth = await manager.get_auth_data()
        headers["Authorization"] = f"Bearer {auth.access_token}"
        if auth.account_id:
            headers["ChatGPT-Account-ID"] = auth.account_id
        upstream = await client.send(
            client.build_request(request.method, url, headers=headers, content=body), stream=True
        )
        if upstream.status_code == 401 and attempt == 0:
            await upstream.aclose()
            manager.report_unauthorized(auth.access_token)
            continue
        break
    response = web.StreamResponse(status=upstream.status_code)
    for key, value in upstream.headers.items():
        if key.lower() not in HOP_BY_HOP | {"content-encoding"}:
            response.headers[key] = value
    await response.prepare(request)
    try:
        async for chunk in upstream.aiter_raw():
            await response.write(chunk)
    finally:
        await upstream.aclose()
    await response.write_eof()
    return response


def make_app(manager: TokenManager, upstream: str) -> web.Application:
    """The proxy app: every path is forwarded to ``upstream``."""
    app = web.Application()
    app[MANAGER] = manager
    app[UPSTREAM] = upstream

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        # Streaming answers (model output) may take minutes between chunks.
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=600.0)) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(client_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Proxy that adds ChatGPT tokens.")
    parser.add_argument("--upstream", default="https://chatgpt.com/backend-api")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--home", help="where logins are stored")
    args = parser.parse_args(argv)
    provider = ProviderConfig.chatgpt()
    async with TokenManager(provider, FileSystemAuthStorage(args.home, provider.name)) as manager:
        runner = web.AppRunner(make_app(manager, args.upstream))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(f"Proxying http://127.0.0.1:{args.port} -> {args.upstream} (Ctrl-C stops)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
