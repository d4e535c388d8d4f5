"""Log in to ChatGPT or any OpenID provider, then get an access token.

python examples/interactive_login.py                       # Sign in with ChatGPT
python examples/interactive_login.py --issuer https://idp.example --client-id my-app
python examples/interactive_login.py --no-browser          # print the URL instead
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from vandamme_oauth import (
    FileSystemAuthStorage,
    OAuthError,
    OAuthFlow,
    ProviderConfig,
    TokenManager,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", help="an OpenID provider (default: ChatGPT)")
    parser.add_argument("--client-id", help="your public client id at --issuer")
    parser.add_argument("--name", help="the login's name (default: chatgpt, or from --issuer)")
    parser.add_argument("--home", help="where logins are stored (default: the CLI's folder)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL only")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)

    if bool(args.issuer) != bool(args.client_id):
        parser.error("--issuer and --client-id go together")
    if args.issuer:
        provider = await ProviderConfig.discover(
            args.issuer,
            client_id=args.client_id,
            scopes=["openid", "offline_access", "email"],
            name=args.name,
        )
    else:
        provider = ProviderConfig.chatgpt(name=args.name or "chatgpt")
    storage = FileSystemAuthStorage(args.home, provider.name)

    def print_url(url: str) -> None:
        print(f"Open this URL to sign in:\n{url}", flush=True)

    opener = print_url if args.no_browser else None
    async with OAuthFlow(provider, storage, open_browser=opener) as flow:
        auth = await flow.authenticate(timeout=args.timeout)
    print(f"Signed in as {auth.email or auth.account_id}.")

    async with TokenManager(provider, storage) as manager:
        token = await manager.get_access_token()
    print(f"An access token is ready ({len(token)} characters); it is refreshed as needed.")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except OAuthError as exc:  # a refused login, a timeout...: one line, no traceback
        raise SystemExit(f"interactive_login: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
