"""Call an API with httpx and tokens from a TokenManager.

python examples/httpx_client.py https://chatgpt.com/backend-api/codex/models
python examples/httpx_client.py https://api.example.com/me --login work   # any stored login
python examples/httpx_client.py URL --issuer https://idp.example --client-id my-app
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

import httpx

from vandamme_oauth import OAuthError, TokenManager, open_login
from vandamme_oauth.integrations.httpx import TokenManagerAuth

if TYPE_CHECKING:
    from collections.abc import Sequence


async def fetch(url: str, manager: TokenManager) -> httpx.Response:
    """GET ``url`` with the manager's token (refreshed and retried once on a 401)."""
    async with httpx.AsyncClient(auth=TokenManagerAuth(manager)) as client:
        return await client.get(url)


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
        response = await fetch(args.url, manager)
    print(response.status_code, response.text[:200])
    return 0 if response.is_success else 1


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except OAuthError as exc:  # no login stored, a refused refresh...: one line, no traceback
        raise SystemExit(f"httpx_client: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
