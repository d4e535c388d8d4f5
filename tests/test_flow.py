"""OAuthFlow details that need no provider: the ChatGPT preset's ports, the default browser."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import vandamme_oauth._flow as flow_module
from vandamme_oauth import (
    InMemoryAuthStorage,
    OAuthFlow,
    OAuthFlowError,
    ProviderConfig,
    ValidationError,
)


async def test_chatgpt_login_listens_on_its_registered_port_and_stops_on_cancel() -> None:
    """The preset sends http://localhost:1455 (or 1457) and listens there on 127.0.0.1;
    a /cancel from another login ends it."""
    urls: asyncio.Queue[str] = asyncio.Queue()
    async with OAuthFlow(
        ProviderConfig.chatgpt(), InMemoryAuthStorage(), open_browser=urls.put_nowait
    ) as flow:
        task = asyncio.create_task(flow.authenticate(timeout=30))
        url = await asyncio.wait_for(urls.get(), timeout=30)
        assert url.startswith("https://auth.openai.com/oauth/authorize?response_type=code&")
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        assert redirect.hostname == "localhost"
        assert redirect.port in (1455, 1457)
        assert redirect.path == "/auth/callback"
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://127.0.0.1:{redirect.port}/cancel")
        assert answer.status_code == 200
        with pytest.raises(OAuthFlowError, match="cancelled"):
            await task


async def test_default_browser_prints_the_url_and_opens_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without open_browser, the URL is printed (for headless use) and the system browser
    is asked to open it."""
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return False

    monkeypatch.setattr("webbrowser.open", fake_open)
    provider = ProviderConfig(
        name="x",
        issuer="https://idp.example",
        client_id="c",
        authorization_endpoint="https://idp.example/authorize",
        token_endpoint="https://idp.example/token",
    )
    async with OAuthFlow(provider, InMemoryAuthStorage()) as flow:
        with pytest.raises(TimeoutError):
            await flow.authenticate(timeout=0.05)
    assert len(opened) == 1
    assert opened[0].startswith("https://idp.example/authorize?")
    err = capsys.readouterr().err
    assert opened[0] in err
    assert "No browser could be opened" in err
    assert flow_module.OAuthFlow is OAuthFlow


def test_redirect_host_must_be_loopback() -> None:
    """A non-loopback redirect host is refused when the provider is configured."""
    with pytest.raises(ValidationError, match="loopback"):
        ProviderConfig.chatgpt().replace(redirect_host="example.com")
