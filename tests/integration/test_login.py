"""Interactive login against the real OpenID provider, through our loopback callback server."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.integration.conftest import pending_login, scripted_login
from tests.support.user_agent import run_browser
from vandamme_oauth import (
    AuthData,
    AuthorizationError,
    CallbackTimeoutError,
    InMemoryAuthStorage,
    IssuerMismatchError,
    OAuthFlow,
    ProviderConfig,
    StorageError,
    decode_claims,
)

if TYPE_CHECKING:
    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR, as every server sets it: TIME_WAIT leftovers do not count, a listener does.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_login_stores_tokens_and_shows_success_page(
    provider_config: ProviderConfig, oidc_provider: RunningProvider
) -> None:
    """A whole login stores the tokens and ends on our success page with no secret in the URL."""
    before = oidc_provider.stats()["authorization_code"]
    storage = InMemoryAuthStorage()
    login = await scripted_login(provider_config, storage, login="alice")

    assert await storage.read_auth() == login.auth
    assert login.auth.account_id == "alice"
    assert login.auth.email == "alice@example.test"
    assert login.auth.refresh_token
    assert login.auth.expires_at is not None
    assert decode_claims(login.auth.id_token or "")["sub"] == "alice"
    assert login.browser.final_status == 200
    assert "Signed in" in login.browser.final_text
    assert urlsplit(login.browser.final_url).path == "/success"
    assert urlsplit(login.browser.final_url).query.startswith("t=")  # a ticket, no code
    assert "code" not in urlsplit(login.browser.final_url).query
    assert oidc_provider.stats()["authorization_code"] == before + 1


async def test_authorization_request_uses_pkce_s256_and_ephemeral_loopback_port(
    provider_config: ProviderConfig,
) -> None:
    """The request carries S256 PKCE, a state and an IP-literal loopback redirect URI."""
    login = await scripted_login(provider_config, InMemoryAuthStorage())
    query = parse_qs(urlsplit(login.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 43
    redirect = urlsplit(query["redirect_uri"][0])
    assert redirect.hostname == "127.0.0.1"
    assert redirect.port not in (None, 80)
    assert _port_is_free(redirect.port or 0)  # released after the login


async def test_forged_state_is_rejected_and_the_real_callback_still_wins(
    provider_config: ProviderConfig,
) -> None:
    """A callback with a forged state gets 400 and the flow keeps waiting for the real one."""
    storage = InMemoryAuthStorage()
    async with pending_login(provider_config, storage) as (task, url):
        result = await run_browser(url, follow_callback=False)
        forged = _with_query(result.callback_url, state="forged-state-value")
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(forged)
            assert answer.status_code == 400
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["Referrer-Policy"] == "no-referrer"
            assert not task.done()
            real = await client.get(result.callback_url, follow_redirects=True)
        assert real.status_code == 200
        auth = await task
    assert await storage.read_auth() == auth


async def test_access_denied_ends_the_login_with_authorization_error(
    provider_config: ProviderConfig,
) -> None:
    """The user pressing Cancel at the provider ends the login with access_denied."""
    storage = InMemoryAuthStorage()
    async with pending_login(provider_config, storage) as (task, url):
        result = await run_browser(url, deny=True)
        with pytest.raises(AuthorizationError) as caught:
            await task
    assert caught.value.error == "access_denied"
    assert result.final_status == 400
    assert "access_denied" in result.final_text
    assert await storage.read_auth() is None


@pytest.mark.parametrize("iss", ["https://evil.example", None])
async def test_wrong_or_missing_iss_is_refused_and_the_code_not_redeemed(
    provider_config: ProviderConfig,
    oidc_provider: RunningProvider,
    iss: str | None,
) -> None:
    """RFC 9207: a foreign iss, or none where the metadata promises one, refuses the code."""
    assert provider_config.require_iss  # oidc-provider advertises the iss parameter
    before = oidc_provider.stats()["authorization_code"]
    storage = InMemoryAuthStorage()
    async with pending_login(provider_config, storage) as (task, url):
        result = await run_browser(url, follow_callback=False)
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(_with_query(result.callback_url, iss=iss))
        with pytest.raises(IssuerMismatchError):
            await task
    assert answer.status_code == 400
    assert await storage.read_auth() is None
    assert oidc_provider.stats()["authorization_code"] == before


async def test_callback_without_code_fails_clearly(provider_config: ProviderConfig) -> None:
    """A callback with the right state but neither code nor error is an AuthorizationError."""
    async with pending_login(provider_config, InMemoryAuthStorage()) as (task, url):
        result = await run_browser(url, follow_callback=False)
        async with httpx.AsyncClient(trust_env=False) as client:
            await client.get(_with_query(result.callback_url, code=None))
        with pytest.raises(AuthorizationError, match="neither a code nor an error"):
            await task


async def test_error_page_escapes_provider_text(provider_config: ProviderConfig) -> None:
    """error_description is shown HTML-escaped on our error page."""
    async with pending_login(provider_config, InMemoryAuthStorage()) as (task, url):
        query = parse_qs(urlsplit(url).query)
        callback = (
            query["redirect_uri"][0]
            + "?"
            + urlencode(
                {
                    "state": query["state"][0],
                    "error": "access_denied",
                    "error_description": "<script>alert(1)</script>",
                    "iss": provider_config.issuer,
                }
            )
        )
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(callback)
        with pytest.raises(AuthorizationError):
            await task
    assert "<script>" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert answer.headers["Connection"] == "close"


async def test_unknown_paths_get_404_and_the_login_goes_on(provider_config: ProviderConfig) -> None:
    """Stray requests (favicon, scanners) get 404 without ending the login."""
    storage = InMemoryAuthStorage()
    async with pending_login(provider_config, storage) as (task, url):
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        async with httpx.AsyncClient(trust_env=False) as client:
            stray = await client.get(f"http://{redirect.netloc}/favicon.ico")
        assert stray.status_code == 404
        assert not task.done()
        await run_browser(url)
        assert await task == await storage.read_auth()


async def test_timeout_raises_and_releases_the_port(provider_config: ProviderConfig) -> None:
    """No callback in time is a CallbackTimeoutError (also a TimeoutError); the port closes."""
    urls: list[str] = []
    async with OAuthFlow(provider_config, InMemoryAuthStorage(), open_browser=urls.append) as f:
        with pytest.raises(CallbackTimeoutError) as caught:
            await f.authenticate(timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    port = urlsplit(parse_qs(urlsplit(urls[0]).query)["redirect_uri"][0]).port
    assert port is not None
    assert _port_is_free(port)


async def test_cancellation_releases_the_port(provider_config: ProviderConfig) -> None:
    """Cancelling authenticate() (Ctrl-C in a CLI) closes the callback server."""
    async with pending_login(provider_config, InMemoryAuthStorage()) as (task, url):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
    assert port is not None
    assert _port_is_free(port)


class RefusingStorage(InMemoryAuthStorage):
    """Storage whose writes fail, as a full disk would."""

    async def write_auth(self, data: AuthData) -> None:
        raise StorageError("cannot write the login: disk full")


async def test_a_login_that_cannot_be_stored_fails_loudly(
    provider_config: ProviderConfig,
) -> None:
    """The code was exchanged but storage refused the tokens: authenticate() raises the
    StorageError and the browser is told the sign-in failed, not that it succeeded."""
    storage = RefusingStorage()
    async with pending_login(provider_config, storage) as (task, url):
        result = await run_browser(url)
        with pytest.raises(StorageError, match="disk full"):
            await task
    assert result.final_status == 400
    assert "Sign-in failed" in result.final_text
    assert "disk full" in result.final_text
    assert await storage.read_auth() is None


async def test_cancelling_a_login_while_its_code_exchange_hangs_ends_it_at_once(
    provider_config: ProviderConfig, oidc_provider: RunningProvider
) -> None:
    """The browser came back and the code exchange hangs at the provider; cancelling the
    login (Ctrl-C, a task cancel) ends it promptly and releases the port, instead of
    waiting out the HTTP timeout and aiohttp's shutdown."""
    storage = InMemoryAuthStorage()
    started = oidc_provider.stats()["token_requests_started"]
    oidc_provider.set_token_latency(60_000)
    try:
        async with pending_login(provider_config, storage) as (task, url):
            browser = asyncio.create_task(run_browser(url))
            await asyncio.to_thread(oidc_provider.wait_for, "token_requests_started", started)
            port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
            task.cancel()
            async with asyncio.timeout(5):  # a hang guard: before the fix, over 30 s
                await asyncio.wait({task})
            assert task.cancelled()
            browser.cancel()
            await asyncio.wait({browser})
    finally:
        oidc_provider.set_token_latency(0)
    assert port is not None
    with socket.socket() as sock:  # released: a new server can listen there (as aiohttp
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # does, past TIME_WAIT)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    assert await storage.read_auth() is None
