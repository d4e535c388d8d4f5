"""Call a tool on a remote MCP server with the ``mcp`` SDK's client and a login made by
vandamme-oauth (pip install "vandamme-oauth[httpx2]" mcp).

    vandamme-oauth login --resource https://mcp.example.com/mcp --name files
    python examples/mcp_client.py files whoami

The login is found by name (its saved profile holds the resource, the authorization server
and the registered client); its token is refreshed, with ``resource``, whenever needed, by
one task for all the requests of the session, and across processes through the login's file
lock. Without a login the server's 401 ends the program with the command that makes one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from vandamme_oauth import OAuthError, TokenManager, open_login

try:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from vandamme_oauth.integrations.httpx2 import TokenManagerAuth
except ImportError:
    raise SystemExit(
        "mcp_client needs the MCP SDK: pip install 'vandamme-oauth[httpx2]' mcp"
    ) from None

if TYPE_CHECKING:
    from collections.abc import Sequence


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call a tool on an MCP server.")
    parser.add_argument("login", help="the stored login of the server (login --resource ...)")
    parser.add_argument("tool", help="the tool to call")
    parser.add_argument("--arguments", default="{}", help="the tool's arguments, as JSON")
    parser.add_argument("--home", help="where logins are stored (default: the CLI's folder)")
    args = parser.parse_args(argv)
    provider, storage = await open_login(args.login, home=args.home)
    if provider.resource is None:
        parser.error(f"{args.login} is not a login to a resource (log in with --resource)")
    async with (
        TokenManager(provider, storage) as manager,
        httpx2.AsyncClient(auth=TokenManagerAuth(manager)) as http,
        Client(streamable_http_client(provider.resource, http_client=http)) as client,
    ):
        result = await client.call_tool(args.tool, json.loads(args.arguments))
    for item in result.content:
        print(getattr(item, "text", item))
    return 1 if result.is_error else 0


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except OAuthError as exc:  # no login, a refused refresh...: one line, no traceback
        raise SystemExit(f"mcp_client: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
