"""Call an API with httpx and tokens from a TokenManager.

python examples/httpx_client.py https://chatgpt.com/backend-api/codex/models
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from vandamme_oauth import FileSystemAuthStorage, ProviderConfig, TokenManager
from vandamme_oauth.integrations.httpx import TokenManagerAuth


async def fetch(url: str, manager: TokenManager) -> httpx.Response:
    """GET ``url`` with the manager's token (refreshed and retried once on a 401)."""
    async with httpx.AsyncClient(auth=TokenManagerAuth(manager)) as client:
        return await client.get(url)


async def main(url: str, home: str | None = None) -> int:
    provider = ProviderConfig.chatgpt()
    async with TokenManager(provider, FileSystemAuthStorage(home, provider.name)) as manager:
        response = await fetch(url, manager)
    print(response.status_code, response.text[:200])
    return 0 if response.is_success else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1])))
