"""A Client ID Metadata Document served over HTTPS on 127.0.0.1, as an app's web site
would serve it: the client id is the document's URL, and the provider fetches it."""

from __future__ import annotations

import json
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import trustme


@dataclass
class MetadataDocument:
    """The document's URL once served, and how many times it was fetched."""

    url: str = ""
    fetches: int = 0
    document: dict[str, object] = field(default_factory=dict)


def native_client(url: str) -> dict[str, object]:
    """The document of a native public client with loopback redirects (any port)."""
    return {
        "client_id": url,
        "client_name": "vandamme-oauth tests",
        "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/auth/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


@asynccontextmanager
async def serve_metadata_document(ca: trustme.CA) -> AsyncIterator[MetadataDocument]:
    """Serve ``/client.json`` over HTTPS with a certificate from ``ca`` for 127.0.0.1."""
    served = MetadataDocument()

    async def document(_request: web.Request) -> web.Response:
        served.fetches += 1
        response = web.Response(text=json.dumps(served.document), content_type="application/json")
        # One request per connection: no TLS connection of the provider's stays open
        # across the server's shutdown (an unclosed transport at the end of a test).
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/client.json", document)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        served.url = f"https://127.0.0.1:{port}/client.json"
        served.document = native_client(served.url)
        yield served
    finally:
        await runner.cleanup()
