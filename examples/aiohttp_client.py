"""Call an API with aiohttp and tokens from a TokenManager, pinned to the API's origin.

python examples/aiohttp_client.py https://chatgpt.com/backend-api/codex/models
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from yarl import URL

from vandamme_oauth import FileSystemAuthStorage, ProviderConfig, TokenManager
from vandamme_oauth.integrations.aiohttp import TokenManagerMiddleware


async def fetch(url: str, manager: TokenManager) -> tuple[int, str]:
    """GET ``url``; only its origin ever sees the token, even across redirects."""
    middleware = TokenManagerMiddleware(manager, origins=[str(URL(url).origin())])
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


async def main(url: str, home: str | None = None) -> int:
    provider = ProviderConfig.chatgpt()
    async with TokenManager(provider, FileSystemAuthStorage(home, provider.name)) as manager:
        status, text = await fetch(url, manager)
    print(status, text[:200])
    return 0 if status < 400 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1])))
