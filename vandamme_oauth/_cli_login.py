"""``vandamme-oauth login``: browser, paste-back and device logins, chosen for the situation.

- A desktop: open the browser and wait for the loopback callback.
- ``--no-browser``, or a headless session (SSH, container, WSL, no display): print the URL;
  when standard input is a terminal (or with ``--paste``) also accept the final redirect
  address pasted by the user, beside the loopback listener.
- ``--device``: the device-code login (RFC 8628, or ChatGPT's variant).

``login NAME`` signs in to a stored login again with its saved provider profile (the
command every "log in again" message names); ``login chatgpt`` uses the preset, and
``login --issuer URL --client-id ID [--name NAME]`` any OpenID provider. A login that
replaces another says so and revokes the replaced refresh token once the new one is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import threading
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ._cli_common import login_command, make_storage, progress, say, where
from ._device import DeviceCode, DeviceFlow
from ._exceptions import (
    NotAuthenticatedError,
    OAuthError,
    StorageError,
    TokenEndpointError,
    ValidationError,
)
from ._flow import OAuthFlow
from ._headless import headless_reason
from ._login import login_name
from ._profiles import load_provider, load_registration, save_registration
from ._provider import ProviderConfig
from ._registration import Registration
from ._resource import canonical_resource
from ._resource_discovery import provider_for_resource
from ._token_client import TokenClient
from .providers import chatgpt
from .storage._filesystem import FileSystemAuthStorage

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Coroutine
    from pathlib import Path

    from .storage._base import AuthData, AuthStorage

__all__ = ["add_login_arguments", "check_login_usage", "login"]


def add_login_arguments(login: argparse.ArgumentParser) -> None:
    """The ``login`` subcommand's options."""
    login.add_argument(
        "target",
        nargs="?",
        metavar="NAME",
        help="chatgpt (the preset, the default) or a stored login to sign in to again",
    )
    login.add_argument("--issuer", help="any OpenID provider's issuer URL (uses discovery)")
    login.add_argument(
        "--resource",
        metavar="URL",
        help="a protected resource (an MCP server): its authorization server is found from "
        "its 401, a client is registered if needed, and the tokens are bound to it",
    )
    login.add_argument(
        "--client-id", help="your client's id at --issuer (or at --resource's server)"
    )
    login.add_argument(
        "--client-metadata-url",
        metavar="URL",
        help="with --resource: your Client ID Metadata Document (an https URL used as the "
        "client id where the server accepts those; else a client is registered)",
    )
    login.add_argument(
        "--client-secret-stdin",
        action="store_true",
        help="read the client's secret from standard input (one line), for providers whose "
        "installed apps need one; it is kept in a 0600 file beside the login, never printed",
    )
    login.add_argument(
        "--scope", action="append", default=None, help="a scope to request (repeatable)"
    )
    login.add_argument(
        "--name", help="name a new login (default: chatgpt, or derived from --issuer)"
    )
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
    login.add_argument(
        "--api-key",
        action="store_true",
        help="ChatGPT: also exchange the login for an OpenAI API key (best effort), kept "
        "with the login; show it with `vandamme-oauth api-key`",
    )
    login.set_defaults(check_usage=lambda args: check_login_usage(login, args))


def check_login_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse contradictory ``login`` options as usage errors (exit 2), before any I/O."""
    if args.resource and (args.issuer or args.target):
        parser.error("--resource finds its own issuer: give it without --issuer or a NAME")
    if args.issuer and not args.client_id:
        parser.error("--issuer needs --client-id")
    if args.client_id and not (args.issuer or args.resource):
        parser.error("--client-id needs --issuer or --resource")
    if args.issuer and args.target:
        parser.error(
            f"give a stored login's NAME ({args.target}) or --issuer/--client-id, not both "
            "(name a new login with --name)"
        )
    if args.client_metadata_url and not args.resource:
        parser.error("--client-metadata-url goes with --resource")
    if args.client_metadata_url and args.client_id:
        parser.error("--client-metadata-url is a client id: give it or --client-id, not both")
    if args.client_secret_stdin and not args.client_id:
        parser.error("--client-secret-stdin needs --client-id (the secret is that client's)")
    if args.client_secret_stdin and args.paste:
        parser.error("--client-secret-stdin and --paste both read standard input: pick one")
    if args.name and args.target not in (None, "chatgpt"):
        parser.error("--name names a new login: use it with chatgpt, --issuer or --resource")
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.api_key and (args.issuer or args.resource):
        parser.error("--api-key is ChatGPT's token exchange: use it with chatgpt, not --issuer")


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


async def _resource_provider(args: argparse.Namespace, home: Path) -> ProviderConfig:
    """The provider of a login to ``--resource``: discovered from its 401, with the client
    registered for this login before (reused), or registered now (and kept)."""
    name = args.name or login_name(canonical_resource(args.resource))
    saved = None if args.client_id else await load_registration(home, name)
    provider, registration = await provider_for_resource(
        args.resource,
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_metadata_url=args.client_metadata_url,
        scopes=tuple(args.scope) if args.scope else None,
        name=name,
        registration=saved,
        device=args.device,
    )
    await _keep_registration(args, home, name, provider.issuer, registration, saved)
    return provider


async def _keep_registration(
    args: argparse.Namespace,
    home: Path,
    name: str,
    issuer: str,
    made: Registration | None,
    previous: Registration | None,
) -> None:
    """Keep a registration made now (said once, before any keyring notice about its
    secrets), and note whether the earlier one was reused (for `invalid_client` later)."""
    if made is not None and made is not previous:
        again = " again" if previous is not None else ""
        say(f"Registered the client {made.client_id} at {issuer}{again}.")
        await save_registration(home, name, made, on_fallback=say)
    args.reused_registration = made is not None and made is previous


async def _register_again(
    home: Path, provider: ProviderConfig, *, device: bool = False
) -> ProviderConfig:
    """The server answered ``invalid_client`` to a client registered for this login before
    (it forgot it): register once more, keep the new registration, and return the provider."""
    assert provider.resource is not None  # noqa: S101 - only resource logins reuse clients
    new, registration = await provider_for_resource(
        provider.resource, scopes=provider.scopes, name=provider.name, device=device
    )
    assert registration is not None  # noqa: S101 - no client id was given: one was registered
    say(
        f"{provider.issuer} no longer knows the client {provider.client_id}; registered "
        f"{registration.client_id} instead. Sign in once more."
    )
    await save_registration(home, provider.name, registration, on_fallback=say)
    return new


async def _client_secret(args: argparse.Namespace) -> str | None:
    """The secret given on standard input with ``--client-secret-stdin``."""
    if not args.client_secret_stdin:
        return None
    secret = ((await _read_line()) or "").strip()
    if not secret:
        raise ValidationError(
            "--client-secret-stdin found no secret on standard input; pipe it in: "
            "... | vandamme-oauth login --client-secret-stdin ..."
        )
    return secret


async def _keep_secret(home: Path, provider: ProviderConfig) -> None:
    """Keep a secret given on the command line where `token` and `logout` find it."""
    if provider.client_secret is not None:
        kept = Registration(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            token_endpoint_auth_method=provider.token_endpoint_auth_method,
        )
        await save_registration(home, provider.name, kept, on_fallback=say)


async def _provider(args: argparse.Namespace, home: Path) -> ProviderConfig:
    args.client_secret = await _client_secret(args)
    provider = await _chosen_provider(args, home)
    if args.client_secret is not None:
        await _keep_secret(home, provider)
    return provider


async def _chosen_provider(args: argparse.Namespace, home: Path) -> ProviderConfig:
    scopes = tuple(args.scope) if args.scope else None
    if args.resource:
        provider = await _resource_provider(args, home)
    elif args.issuer:
        provider = await ProviderConfig.discover(
            args.issuer,
            client_id=args.client_id,
            scopes=scopes or ("openid", "offline_access"),
            name=args.name or login_name(args.issuer),
            response_mode="form_post" if args.form_post else None,
            client_secret=args.client_secret,
        )
    else:
        target = args.target or "chatgpt"
        if target == "chatgpt" and args.name:
            saved: ProviderConfig | None = ProviderConfig.chatgpt(name=args.name)
        else:
            saved = await load_provider(home, target)
        if saved is None:
            raise NotAuthenticatedError(
                f"no login named {target!r} in {home}; to create it, run: vandamme-oauth "
                f"login --issuer URL --client-id ID --name {shlex.quote(target)}"
            )
        provider = saved
        if saved.resource is not None and saved.client_id == getattr(
            registration := await load_registration(home, target), "client_id", None
        ):
            # A login to a resource: discover again, so that a registration the server
            # forgot (or whose secret expired) is made anew, once.
            provider, made = await provider_for_resource(
                saved.resource,
                scopes=scopes or saved.scopes,
                name=target,
                registration=registration,
                device=args.device,
            )
            await _keep_registration(args, home, target, provider.issuer, made, registration)
        if scopes:
            provider = provider.replace(scopes=scopes)
        if args.form_post:
            provider = provider.replace(response_mode="form_post")
    if args.redirect_path:
        provider = provider.replace(redirect_path=args.redirect_path)
    return provider


async def _device_login(provider: ProviderConfig, storage: AuthStorage) -> AuthData:
    codes: list[DeviceCode] = []

    def show(code: DeviceCode) -> None:
        print(
            f"To sign in, open {code.verification_uri} on any device and enter the code:\n\n"
            f"  {code.user_code}\n",
            flush=True,
        )
        if code.verification_uri_complete:
            print(f"(or open {code.verification_uri_complete})\n", flush=True)
        codes.append(code)
        shown.set()

    shown = asyncio.Event()
    async with (
        DeviceFlow(provider, storage, on_code=show) as flow,
        _owned(flow.authenticate()) as login,
    ):
        # Show the wait once the code is on screen, until the login ends either way.
        await _until(shown, login)
        if login.done():
            return login.result()
        async with progress(
            "Waiting for the sign-in on the other device", total=codes[0].expires_in
        ):
            return await login


@contextlib.asynccontextmanager
async def _owned(login: Coroutine[Any, Any, AuthData]) -> AsyncIterator[asyncio.Task[AuthData]]:
    """Run ``login`` in a task that never outlives the block (Ctrl-C, an error)."""
    task = asyncio.create_task(login)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


async def _until(event: asyncio.Event, task: asyncio.Task[AuthData]) -> None:
    """Wait until ``event`` is set or ``task`` has ended, leaving no helper task behind."""
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _browser_login(
    args: argparse.Namespace, provider: ProviderConfig, storage: AuthStorage
) -> AuthData:
    # headless_reason() reads small files under /proc: keep it off the event loop.
    headless = None if args.no_browser else await anyio.to_thread.run_sync(headless_reason)
    print_only = args.no_browser or headless is not None
    paste = args.paste or (print_only and sys.stdin.isatty() and not args.client_secret_stdin)
    if headless is not None:
        say(f"This looks like {headless}: not opening a browser here.")

    def show_url(url: str) -> None:
        print(f"Open this URL in a browser to sign in:\n\n  {url}\n", flush=True)
        if paste:
            say(
                "If that browser cannot reach this machine, it ends on a page that fails to "
                "load: copy that page's full address and paste it here, then press Enter."
            )
        if headless is not None or paste:
            say("No browser at all? Run: vandamme-oauth login --device")

    listening = asyncio.Event()
    redirect: list[str] = []

    def waiting(redirect_uri: str) -> None:
        redirect.append(redirect_uri)
        listening.set()

    def rejected(reason: str) -> None:
        say(f"Not accepted: {reason}. Paste the full address again:")

    opener = show_url if print_only else None
    async with (
        OAuthFlow(provider, storage, open_browser=opener) as flow,
        _owned(
            flow.authenticate(
                timeout=args.timeout,
                on_listening=waiting,
                paste=_read_line if paste else None,
                on_paste_rejected=rejected,
            )
        ) as login,
    ):
        await _until(listening, login)
        if login.done():
            return login.result()
        text = f"Waiting for the browser to come back to {redirect[0]}"
        if paste:  # the user may be typing: no line that redraws itself
            say(f"{text} (up to {args.timeout:g} s; press Ctrl-C to cancel)...")
            return await login
        async with progress(text, total=args.timeout):
            return await login


async def _previous(
    storage: AuthStorage, home: Path, name: str
) -> tuple[AuthData | None, ProviderConfig | None]:
    """The login this one will replace, and its provider (read before the browser opens,
    which also makes a keyring fallback known now)."""
    try:
        previous = await storage.read_auth()
    except StorageError:
        return None, None  # unreadable: the new login moves it aside
    if previous is None:
        return None, None
    try:
        return previous, await load_provider(home, name)
    except StorageError:
        return previous, None


async def _retire(
    previous: AuthData, provider: ProviderConfig | None, new: AuthData, issuer: str
) -> None:
    """Revoke the replaced login's refresh token (best effort; the new one is stored).

    Not when the new login is the same account at the same provider: some providers
    (Google, for one) revoke the whole grant of a user and client when one of its tokens is
    revoked, which would end the login just made. That old token is no longer stored.
    """
    if not previous.refresh_token or previous.refresh_token == new.refresh_token:
        return
    who = previous.email or previous.account_id or "an unknown account"
    same_account = previous.account_id is not None and previous.account_id == new.account_id
    if provider is not None and same_account and provider.issuer == issuer:
        say(f"Replaced the earlier login of {who} (same account: its token is dropped here).")
        return
    if provider is None:
        say(f"Replaced the login of {who}; its refresh token was not revoked (no saved provider).")
        return
    try:
        async with TokenClient(provider) as client:
            revoked = await client.revoke(previous)
    except OAuthError as exc:
        say(f"Replaced the login of {who}; revoking its refresh token failed ({exc}).")
        return
    if revoked:
        say(f"Replaced the login of {who}; its refresh token was revoked.")
    else:
        say(f"Replaced the login of {who}; the provider offers no revocation.")


async def login(args: argparse.Namespace, home: Path) -> int:
    """Run ``vandamme-oauth login`` and return the exit code."""
    provider = await _provider(args, home)
    # A home that cannot hold the login is reported now, before the browser opens, not
    # after the code was exchanged.
    await FileSystemAuthStorage(home, provider.name).ensure_home()
    storage = make_storage(args, home, provider.name)
    args.relogin = login_command(args, provider.name)
    previous, previous_provider = await _previous(storage, home, provider.name)
    # The flows store the provider profile (no secrets) and then the tokens, so a login
    # is complete or absent: never tokens that `token` and `logout` cannot use.
    try:
        auth = await _sign_in(args, provider, storage)
    except TokenEndpointError as exc:
        if exc.error != "invalid_client" or not getattr(args, "reused_registration", False):
            raise
        provider = await _register_again(home, provider, device=args.device)
        auth = await _sign_in(args, provider, storage)
    who = auth.email or auth.account_id or "unknown account"
    print(f"Logged in to {provider.name} as {who}. Tokens stored in {where(storage)}.", flush=True)
    if previous is not None:
        await _retire(previous, previous_provider, auth, provider.issuer)
    if args.api_key:
        await _add_api_key(provider, storage, auth)
    return 0


async def _sign_in(
    args: argparse.Namespace, provider: ProviderConfig, storage: AuthStorage
) -> AuthData:
    if args.device:
        return await _device_login(provider, storage)
    return await _browser_login(args, provider, storage)


async def _add_api_key(provider: ProviderConfig, storage: AuthStorage, auth: AuthData) -> None:
    """Exchange the new login for an API key and keep it with the login. Best effort, as
    the Codex CLI does it: a failure is one notice, and the login stands."""
    if not chatgpt.is_chatgpt(provider):
        say(f"No API key: {provider.issuer} is not ChatGPT's auth server (the login stands).")
        return
    try:
        async with TokenClient(provider) as client:
            key = await chatgpt.exchange_api_key(client, auth)
        await storage.write_auth(auth.replace(api_key=key))
    except OAuthError as exc:
        say(f"No API key: {exc} (the login stands).")
        return
    say(
        "An OpenAI API key is stored with the login; show it with: "
        f"vandamme-oauth api-key {provider.name}"
    )
