"""TokenClient over respx: request shapes, retries only where safe, error mapping."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.test_protocol import CHATGPT, GENERIC
from vandamme_oauth import (
    AuthData,
    HttpError,
    NetworkError,
    ReauthenticationRequired,
    RetryPolicy,
    TokenClient,
    TokenEndpointError,
    TokenError,
)
from vandamme_oauth._http_client import parse_retry_after

if TYPE_CHECKING:
    import respx

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
LOGIN = AuthData(access_token="AT", refresh_token="RT", account_id="a", last_refresh=1.0)


async def test_chatgpt_refresh_sends_json_and_merges(respx_mock: respx.MockRouter) -> None:
    """The ChatGPT refresh is one JSON POST; the answer is merged into the login."""
    route = respx_mock.post(CHATGPT.token_endpoint).respond(json={"access_token": "AT2"})
    async with TokenClient(CHATGPT, retry=FAST, clock=lambda: 100.0) as client:
        new = await client.refresh(LOGIN)
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "client_id": CHATGPT.client_id,
        "grant_type": "refresh_token",
        "refresh_token": "RT",
    }
    assert (new.access_token, new.refresh_token, new.account_id, new.last_refresh) == (
        "AT2",
        "RT",
        "a",
        100.0,
    )


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_refresh_is_never_retried_once_sent(
    respx_mock: respx.MockRouter, status: int
) -> None:
    """A refresh that reached the server is not repeated, whatever the answer."""
    route = respx_mock.post(GENERIC.token_endpoint).respond(status, json={"error": "x"})
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(TokenEndpointError) as caught:
            await client.refresh(LOGIN)
    assert route.call_count == 1
    assert caught.value.transient
    assert caught.value.status_code == status


async def test_refresh_read_timeout_is_not_retried(respx_mock: respx.MockRouter) -> None:
    """A timeout after sending may have spent the token: no retry, NetworkError(sent=True)."""
    route = respx_mock.post(GENERIC.token_endpoint).mock(side_effect=httpx.ReadTimeout("slow"))
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(NetworkError) as caught:
            await client.refresh(LOGIN)
    assert route.call_count == 1
    assert caught.value.sent is True


async def test_refresh_connect_error_is_retried(respx_mock: respx.MockRouter) -> None:
    """A connection that never opened cannot have spent the token: it is retried."""
    route = respx_mock.post(GENERIC.token_endpoint)
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"access_token": "N"}),
    ]
    async with TokenClient(GENERIC, retry=FAST) as client:
        assert (await client.refresh(LOGIN)).access_token == "N"
    assert route.call_count == 2


async def test_code_exchange_is_sent_once(respx_mock: respx.MockRouter) -> None:
    """Codes are single use: a 503 on the exchange is not retried."""
    route = respx_mock.post(GENERIC.token_endpoint).respond(503)
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(TokenEndpointError):
            await client.exchange_code(code="C", redirect_uri="http://127.0.0.1:1/cb", verifier="V")
    assert route.call_count == 1


async def test_invalid_grant_is_reauthentication(respx_mock: respx.MockRouter) -> None:
    """invalid_grant on refresh raises ReauthenticationRequired with the status."""
    respx_mock.post(GENERIC.token_endpoint).respond(400, json={"error": "invalid_grant"})
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(ReauthenticationRequired) as caught:
            await client.refresh(LOGIN)
    assert caught.value.status_code == 400


async def test_refresh_without_refresh_token(respx_mock: respx.MockRouter) -> None:
    """No refresh token stored: ReauthenticationRequired without any request."""
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(ReauthenticationRequired, match="no refresh token"):
            await client.refresh(AuthData(access_token="AT"))


async def test_revoke_retries_503_with_retry_after(respx_mock: respx.MockRouter) -> None:
    """Revocation is idempotent: a 503 with Retry-After is retried, then succeeds."""
    route = respx_mock.post(GENERIC.revocation_endpoint or "")
    route.side_effect = [httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200)]
    async with TokenClient(GENERIC, retry=FAST) as client:
        assert await client.revoke(LOGIN) is True
    assert route.call_count == 2
    assert (
        route.calls.last.request.content == b"token=RT&token_type_hint=refresh_token&client_id=cid"
    )


async def test_revoke_failure_and_absence(respx_mock: respx.MockRouter) -> None:
    """A refused revocation raises HttpError; no endpoint returns False without a request."""
    respx_mock.post(GENERIC.revocation_endpoint or "").respond(400, json={"error": "x"})
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(HttpError) as caught:
            await client.revoke(LOGIN)
    assert caught.value.status_code == 400
    async with TokenClient(GENERIC.replace(revocation_endpoint=None)) as client:
        assert await client.revoke(LOGIN) is False


async def test_external_client_is_not_closed() -> None:
    """A client passed in stays open after the TokenClient closes."""
    async with httpx.AsyncClient() as external:
        async with TokenClient(GENERIC, http_client=external):
            pass
        assert not external.is_closed


def test_retry_after_parsing() -> None:
    """Delta-seconds and HTTP dates are understood; garbage is ignored."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert RetryPolicy().delay(0, 3.0) == 3.0
    assert 0 <= RetryPolicy(base_delay=1).delay(5, None) <= 8.0


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, "invalid_request", TokenEndpointError),
        (400, "invalid_grant", ReauthenticationRequired),
        (503, "temporarily_unavailable", TokenEndpointError),
    ],
)
async def test_a_provider_echoing_the_refresh_token_never_leaks_it(
    status: int, error: str, kind: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """An error_description (and the rest of the body) that repeats the opaque refresh token
    we sent: the token is in no message, attribute or log line."""
    secret = "opaque-refresh-value-7f3a9"

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={"error": error, "error_description": f"token {secret} is bad", "t": secret},
        )

    caplog.set_level(logging.DEBUG, logger="vandamme_oauth")
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(echo)) as http,
        TokenClient(GENERIC, http_client=http, retry=RetryPolicy(attempts=1)) as client,
    ):
        with pytest.raises(kind) as caught:
            await client.refresh(AuthData(access_token="AT", refresh_token=secret))
    exc = caught.value
    assert isinstance(exc, TokenError)
    text = " ".join(
        [str(exc), repr(exc), str(vars(exc)), *(r.getMessage() for r in caplog.records)]
    )
    assert secret not in text
    assert "[redacted]" in str(exc.error_description)
