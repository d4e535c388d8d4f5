"""A small ChatGPT reverse proxy: clients call it without credentials, it forwards to the
upstream (default ChatGPT's backend) with the user's token and account headers.

    vandamme-oauth login chatgpt
    python examples/chatgpt_proxy.py --port 8080
    curl -N http://127.0.0.1:8080/codex/responses -d @request.json

    python examples/chatgpt_proxy.py --login work --upstream https://api.example.com

Request and response bodies stream through, byte for byte: a compressed answer is relayed
compressed, with its ``Content-Encoding``, and the upstream is asked for exactly the
encodings the client accepts. A usage limit (429) reaches the client with a ``Retry-After``
saying when the limit resets. A small request body (up to 1 MiB with a known
length) is kept so that a 401 can be retried once after a refresh; a larger or chunked one
is streamed and a 401 is passed back (the next request uses the refreshed token).

With OpenTelemetry's Prometheus exporter installed (``pip install "vandamme-oauth[otel]"
opentelemetry-sdk opentelemetry-exporter-prometheus``), ``GET /metrics`` shows the library's
metrics (refreshes, waits, logins about to expire...) in Prometheus' text format.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

from vandamme_oauth import OAuthError, TokenManager, open_login
from vandamme_oauth.integrations.httpx import TokenManagerAuth
from vandamme_oauth.providers import chatgpt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

CLIENT = web.AppKey("client", httpx.AsyncClient)
UPSTREAM = web.AppKey("upstream", str)
REPLAYABLE = 1024 * 1024
# Hop-by-hop headers, and what the proxy sets itself.
DROP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "authorization",
    "chatgpt-account-id",
    "content-length",
    "proxy-authorization",
}


async def forward(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
    if not any(k.lower() == "accept-encoding" for k in headers):
        headers["Accept-Encoding"] = "identity"  # not httpx's default: the client asked none
    body: bytes | AsyncIterator[bytes]
    if request.content_length is not None and request.content_length <= REPLAYABLE:
        body = await request.read()
    else:
        body = request.content.iter_any()
    url = request.app[UPSTREAM].rstrip("/") + request.rel_url.path_qs
    upstream = await client.send(
        client.build_request(request.method, url, headers=headers, content=body), stream=True
    )
    if upstream.status_code == 429:
        return await usage_limited(upstream)
    response = web.StreamResponse(status=upstream.status_code)
    for key, value in upstream.headers.items():
        if key.lower() not in DROP:  # Content-Encoding stays: the bytes are relayed raw
            response.headers[key] = value
    try:
        await response.prepare(request)
        async for chunk in upstream.aiter_raw():
            await response.write(chunk)
    finally:
        await upstream.aclose()
    await response.write_eof()
    return response


async def usage_limited(upstream: httpx.Response) -> web.Response:
    """A usage limit (429): tell the client when to come back, in ``Retry-After``."""
    try:
        body = await upstream.aread()  # decoded: a small JSON error
    finally:
        await upstream.aclose()
    limit = chatgpt.usage_limit(429, upstream.headers, body)
    headers = {"Content-Type": upstream.headers.get("content-type", "application/json")}
    if limit is not None and (seconds := limit.retry_after()) is not None:
        headers["Retry-After"] = str(seconds)
    return web.Response(status=429, body=body, headers=headers)


def metrics_handler() -> Callable[[web.Request], Awaitable[web.Response]] | None:
    """``/metrics`` through OpenTelemetry's Prometheus exporter, when it is installed."""
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:
        return None
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))

    async def serve(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest)  # collection runs the callbacks
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve


def make_app(manager: TokenManager, upstream: str) -> web.Application:
    """The proxy: every path and method is forwarded to ``upstream`` (but ``/metrics``,
    when the Prometheus exporter is installed)."""
    app = web.Application()
    app[UPSTREAM] = upstream
    if (metrics := metrics_handler()) is not None:
        app.router.add_get("/metrics", metrics)

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = httpx.Timeout(30.0, read=600.0)  # model output can pause between chunks
        async with httpx.AsyncClient(auth=TokenManagerAuth(manager), timeout=timeout) as client:
            app[CLIENT] = client
            yield

    app.cleanup_ctx.append(client_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A ChatGPT proxy that adds your tokens.")
    parser.add_argument("--upstream", default="https://chatgpt.com/backend-api")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--login", help="a stored login's name (default: chatgpt)")
    parser.add_argument("--home", help="where logins are stored (default: the CLI's folder)")
    args = parser.parse_args(argv)
    provider, storage = await open_login(args.login, home=args.home)
    async with TokenManager(provider, storage) as manager:
        await manager.get_access_token()  # no usable login: say so now, not per request
        runner = web.AppRunner(make_app(manager, args.upstream))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
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
        raise SystemExit(f"chatgpt_proxy: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
