"""Call an API with aiohttp and tokens from a TokenManager, pinned to the API's origin.

python examples/aiohttp_client.py https://chatgpt.com/backend-api/codex/models
python examples/aiohttp_client.py https://api.example.com/me --login work   # any stored login
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from vandamme_oauth import OAuthError, TokenManager, open_login
from vandamme_oauth.integrations.aiohttp import TokenManagerMiddleware

if TYPE_CHECKING:
    from collections.abc import Sequence


async def fetch(url: str, manager: TokenManager) -> tuple[int, str]:
    """GET ``url``; only its origin ever sees the token, even across redirects."""
    middleware = TokenManagerMiddleware(manager, origins=[str(URL(url).origin())])
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.text()


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET a URL with a stored login's token.")
    parser.add_argument("url")
    parser.add_argument("--login", help="a stored login's name (default: chatgpt)")
    parser.add_argument("--issuer", help="or any OpenID provider's issuer (with --client-id)")
    parser.add_argument("--client-id", help="your client's id at --issuer")
    parser.add_argument("--home", help="where logins are stored (default: the CLI's folder)")
    args = parser.parse_args(argv)
    provider, storage = await open_login(
        args.login, issuer=args.issuer, client_id=args.client_id, home=args.home
    )
    async with TokenManager(provider, storage) as manager:
        status, text = await fetch(args.url, manager)
    print(status, text[:200])
    return 0 if status < 400 else 1


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except OAuthError as exc:  # no login stored, a refused refresh...: one line, no traceback
        raise SystemExit(f"aiohttp_client: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
