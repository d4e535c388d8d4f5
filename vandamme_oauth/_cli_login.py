"""``vandamme-oauth login``: browser, paste-back and device logins, chosen for the situation.

- A desktop: open the browser and wait for the loopback callback.
- ``--no-browser``, or a headless session (SSH, container, WSL, no display): print the URL;
  when standard input is a terminal (or with ``--paste``) also accept the final redirect
  address pasted by the user, beside the loopback listener.
- ``--device``: the device-code login (RFC 8628, or ChatGPT's variant).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import TYPE_CHECKING

import anyio.to_thread

from ._device import DeviceCode, DeviceFlow
from ._exceptions import ValidationError
from ._flow import OAuthFlow
from ._headless import headless_reason
from ._profiles import delete_provider, load_provider, save_provider
from ._provider import ProviderConfig, login_name
from .storage._filesystem import FileSystemAuthStorage
from .storage._keyring import KeyringAuthStorage

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from .storage._base import AuthData, AuthStorage

__all__ = ["add_login_arguments", "login", "make_storage", "where"]


def add_login_arguments(login: argparse.ArgumentParser) -> None:
    """The ``login`` subcommand's options."""
    login.add_argument("provider", nargs="?", choices=["chatgpt"], help="a preset (chatgpt)")
    login.add_argument("--issuer", help="any OpenID provider's issuer URL (uses discovery)")
    login.add_argument("--client-id", help="your public client's id at --issuer")
    login.add_argument(
        "--scope", action="append", default=None, help="a scope to request (repeatable)"
    )
    login.add_argument("--name", help="the login's name (default: derived from the provider)")
    login.add_argument(
        "--no-browser", action="store_true", help="print the URL instead of opening a browser"
    )
    login.add_argument(
        "--paste",
        action="store_true",
        help="also accept the final redirect address (or the code) pasted on standard input",
    )
    login.add_argument(
        "--device", action="store_true", help="log in with a code typed on another device"
    )
    login.add_argument(
        "--form-post", action="store_true", help="ask for the callback as a POST (form_post)"
    )
    login.add_argument("--redirect-path", help="the callback path registered for your client")
    login.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the sign-in"
    )


def make_storage(args: argparse.Namespace, home: Path, name: str) -> AuthStorage:
    """The login's storage: the file in ``home``, or the OS keyring with that file as its
    announced fallback (``--keyring``)."""
    file = FileSystemAuthStorage(home, name)
    if getattr(args, "keyring", False):
        return KeyringAuthStorage(name, fallback=file, on_fallback=_say)
    return file


def where(storage: AuthStorage) -> str:
    """Where a login lives, for messages (never a secret)."""
    if isinstance(storage, KeyringAuthStorage):
        if storage.fallback_reason is None:
            return f"the OS keyring ({storage.service}/{storage.name})"
        return str(storage.fallback.path)
    return str(getattr(storage, "path", storage))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _read_line() -> str | None:
    """One line from standard input without blocking the loop (a daemon thread, so an
    unanswered prompt never keeps the process alive)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def read() -> None:
        line = sys.stdin.readline()

        def deliver() -> None:
            if not future.done():
                future.set_result(line or None)

        # RuntimeError: the loop is gone because the login ended another way.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver)

    threading.Thread(target=read, name="vandamme-oauth-paste", daemon=True).start()
    return await future


async def _provider(args: argparse.Namespace) -> ProviderConfig:
    scopes = tuple(args.scope) if args.scope else None
    if args.issuer:
        if not args.client_id:
            raise ValidationError("--issuer needs --client-id")
        provider = await ProviderConfig.discover(
            args.issuer,
            client_id=args.client_id,
            scopes=scopes or ("openid", "offline_access"),
            name=args.name or login_name(args.issuer),
            response_mode="form_post" if args.form_post else None,
        )
    else:
        provider = ProviderConfig.chatgpt(name=args.name or "chatgpt")
        if scopes:
            provider = provider.replace(scopes=scopes)
        if args.form_post:
            provider = provider.replace(response_mode="form_post")
    if args.redirect_path:
        provider = provider.replace(redirect_path=args.redirect_path)
    return provider


async def _device_login(provider: ProviderConfig, storage: AuthStorage) -> AuthData:
    def show(code: DeviceCode) -> None:
        print(
            f"To sign in, open {code.verification_uri} on any device and enter the code:\n\n"
            f"  {code.user_code}\n",
            flush=True,
        )
        if code.verification_uri_complete:
            print(f"(or open {code.verification_uri_complete})\n", flush=True)
        _say(
            f"Waiting for the sign-in (the code expires in {code.expires_in / 60:.0f} min; "
            "press Ctrl-C to cancel)..."
        )

    async with DeviceFlow(provider, storage, on_code=show) as flow:
        return await flow.authenticate()


async def _browser_login(
    args: argparse.Namespace, provider: ProviderConfig, storage: AuthStorage
) -> AuthData:
    # headless_reason() reads small files under /proc: keep it off the event loop.
    headless = None if args.no_browser else await anyio.to_thread.run_sync(headless_reason)
    print_only = args.no_browser or headless is not None
    paste = args.paste or (print_only and sys.stdin.isatty())
    if headless is not None:
        _say(f"This looks like {headless}: not opening a browser here.")

    def show_url(url: str) -> None:
        print(f"Open this URL in a browser to sign in:\n\n  {url}\n", flush=True)
        if paste:
            _say(
                "If that browser cannot reach this machine, it ends on a page that fails to "
                "load: copy that page's full address and paste it here, then press Enter."
            )
        if headless is not None or paste:
            _say("No browser at all? Run: vandamme-oauth login --device")

    def waiting(redirect_uri: str) -> None:
        _say(
            f"Waiting up to {args.timeout:g} s for the browser to come back to {redirect_uri} "
            "(press Ctrl-C to cancel)..."
        )

    def rejected(reason: str) -> None:
        _say(f"That was not accepted ({reason}). Paste the full address again:")

    async with OAuthFlow(provider, storage, open_browser=show_url if print_only else None) as f:
        return await f.authenticate(
            timeout=args.timeout,
            on_listening=waiting,
            paste=_read_line if paste else None,
            on_paste_rejected=rejected,
        )


async def login(args: argparse.Namespace, home: Path) -> int:
    """Run ``vandamme-oauth login`` and return the exit code."""
    provider = await _provider(args)
    # A home that cannot hold the login is reported now, before the browser opens, not
    # after the code was exchanged.
    await FileSystemAuthStorage(home, provider.name).ensure_home()
    storage = make_storage(args, home, provider.name)
    # The profile (no secrets) goes first: tokens are never stored without it, so there is
    # no login that `status` lists and `token` calls unknown. It is removed again if the
    # login does not complete and there was none before.
    had_profile = await load_provider(home, provider.name) is not None
    await save_provider(home, provider)
    try:
        if args.device:
            auth = await _device_login(provider, storage)
        else:
            auth = await _browser_login(args, provider, storage)
    except BaseException:
        with contextlib.suppress(Exception):
            if not had_profile and await storage.read_auth() is None:
                await delete_provider(home, provider.name)
        raise
    who = auth.email or auth.account_id or "unknown account"
    print(f"Logged in to {provider.name} as {who}. Tokens stored in {where(storage)}.", flush=True)
    return 0
