"""The HTTP edge (respx, and one real server on loopback): what every request carries, what
it never does (follow a redirect, go through a proxy to loopback), and how retries honour
the policy and the server's Retry-After; the errors of revocation and refresh."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from typing import TYPE_CHECKING

import httpx
import pytest
import trustme
from aiohttp import web

from tests.support.metadata_document import serve_metadata_document
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    HttpError,
    NetworkError,
    RetryPolicy,
    TokenClient,
    TokenEndpointError,
)
from vandamme_oauth._endpoints import endpoint_for
from vandamme_oauth._http_client import (
    USER_AGENT,
    new_http_client,
    parse_retry_after,
    send_with_retries,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import respx

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
LOGIN = AuthData(access_token="AT", refresh_token="RT-opaque-1234", last_refresh=1.0)


@dataclasses.dataclass(frozen=True, slots=True)
class Spied(RetryPolicy):
    """A policy that waits nothing and records what each wait was asked for."""

    asked: list[tuple[int, float | None]] = dataclasses.field(default_factory=list)
    wait: float = 0.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        self.asked.append((attempt, retry_after))
        return self.wait


async def test_every_request_says_who_it_is_accepts_json_and_has_timeouts(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(GENERIC.token_endpoint).respond(json={"access_token": "N"})
    async with TokenClient(GENERIC, retry=FAST) as client:
        await client.refresh(LOGIN)
    request = route.calls.last.request
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Accept"] == "application/json"
    assert request.extensions["timeout"] == {
        "connect": 10.0,
        "read": 30.0,
        "write": 30.0,
        "pool": 30.0,
    }


async def test_a_redirect_from_the_token_endpoint_is_not_followed(
    respx_mock: respx.MockRouter,
) -> None:
    """A refresh token is never carried to wherever a 307 points: the answer is an error
    naming the status, and the other place sees no request."""
    elsewhere = respx_mock.post("https://elsewhere.example/steal").respond(json={})
    respx_mock.post(GENERIC.token_endpoint).respond(
        307, headers={"Location": "https://elsewhere.example/steal"}
    )
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(TokenEndpointError) as caught:
            await client.refresh(LOGIN)
    assert caught.value.status_code == 307
    assert elsewhere.call_count == 0


@contextlib.asynccontextmanager
async def serving(text: str, asked: list[str] | None = None) -> AsyncIterator[int]:
    """A real HTTP server on 127.0.0.1 answering ``text`` to any request (recording its URL
    in ``asked``); yields its port."""

    async def answer(request: web.Request) -> web.Response:
        if asked is not None:
            asked.append(str(request.url))
        return web.Response(text=text)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def loopback() -> AsyncIterator[int]:
    """A server on 127.0.0.1 answering "direct"; yields its port."""
    async with serving("direct") as port:
        yield port


async def test_proxy_settings_never_route_loopback(
    loopback: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a proxy in the environment (here one that does not exist), requests to
    127.0.0.1 and localhost still go straight to the server."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing listens
    async with new_http_client(verify=False) as client:
        for host in ("127.0.0.1", "localhost"):
            response = await client.get(f"http://{host}:{loopback}/")
            assert response.text == "direct", host


async def test_retries_wait_at_least_what_the_server_asked(respx_mock: respx.MockRouter) -> None:
    """An idempotent request answered 503 with Retry-After: each wait is asked with the
    server's seconds and the attempt that failed."""
    route = respx_mock.post(GENERIC.revocation_endpoint or "")
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "5"}),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200),
    ]
    policy = Spied(attempts=3)
    async with TokenClient(GENERIC, retry=policy) as client:
        assert await client.revoke(LOGIN) is True
    assert policy.asked == [(0, 5.0), (1, 7.0)]


async def test_attempts_bound_the_retries(respx_mock: respx.MockRouter) -> None:
    """attempts=4 against a server that keeps failing: four requests, the last answer
    stands."""
    route = respx_mock.post(GENERIC.revocation_endpoint or "").respond(503)
    async with TokenClient(GENERIC, retry=Spied(attempts=4)) as client:
        with pytest.raises(HttpError) as caught:
            await client.revoke(LOGIN)
    assert route.call_count == 4
    assert caught.value.status_code == 503


async def test_no_attempt_starts_after_the_deadline(respx_mock: respx.MockRouter) -> None:
    """A wait that would carry the next attempt past the deadline is not waited: the
    last answer stands, however many attempts the policy allows."""
    route = respx_mock.post(GENERIC.revocation_endpoint or "").respond(503)
    policy = Spied(attempts=1000, deadline=5.0, wait=10.0)
    async with TokenClient(GENERIC, retry=policy) as client:
        with pytest.raises(HttpError) as caught:
            await client.revoke(LOGIN)
    assert route.call_count == 1
    assert caught.value.status_code == 503
    assert policy.asked == [(0, None)]


async def test_content_type_goes_with_the_body(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("https://idp.example/x").respond(200)
    async with httpx.AsyncClient() as http:
        await send_with_retries(
            http,
            "POST",
            "https://idp.example/x",
            idempotent=True,
            policy=FAST,
            content=b"a=1",
            content_type="application/x-www-form-urlencoded",
            headers={"X-Extra": "1"},
        )
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["X-Extra"] == "1"
    assert request.content == b"a=1"


def test_a_retry_after_date_in_the_past_is_no_wait() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=130.0) == 0.0


def test_policy_waits_are_exponential_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before attempt n+2 the wait is drawn uniformly below base * 2**n (capped): with the
    draw at its top, 1, 2, 4, 8, then the cap; with the draw at a quarter, a quarter."""
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    draws: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", top)
    assert [policy.delay(n, None) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert draws[0] == (0.0, 1.0)
    monkeypatch.setattr(random, "uniform", lambda low, high: low + (high - low) / 4)
    assert policy.delay(2, None) == 1.0
    assert policy.delay(2, 3.0) == 3.0  # Retry-After is a floor


async def test_a_refused_revocation_says_what_the_server_answered(
    respx_mock: respx.MockRouter,
) -> None:
    """Status, reason, URL and a body without the token that was sent."""
    respx_mock.post(GENERIC.revocation_endpoint or "").respond(
        400, json={"error": "bad", "error_description": f"cannot revoke {LOGIN.refresh_token}"}
    )
    async with TokenClient(GENERIC, retry=FAST) as client:
        with pytest.raises(HttpError) as caught:
            await client.revoke(LOGIN)
    error = caught.value
    assert str(error).startswith("the revocation endpoint answered HTTP 400")
    assert (error.status_code, error.reason, error.url) == (
        400,
        "Bad Request",
        GENERIC.revocation_endpoint,
    )
    assert error.body is not None
    assert "cannot revoke [redacted]" in error.body
    assert str(LOGIN.refresh_token) not in str(vars(error))


async def test_without_a_refresh_token_the_access_token_is_revoked(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.post(GENERIC.revocation_endpoint or "").respond(200)
    async with TokenClient(GENERIC, retry=FAST) as client:
        assert await client.revoke(AuthData(access_token="AT-only")) is True
    assert route.calls.last.request.content == (
        b"token=AT-only&token_type_hint=access_token&client_id=cid"
    )


async def test_a_confidential_clients_secret_is_sent_and_never_echoed(
    respx_mock: respx.MockRouter,
) -> None:
    """client_secret_basic: the secret goes in the Authorization header; a provider that
    repeats it in an error has it redacted, and the error names the token endpoint."""
    secret = "client-secret-value-99"
    provider = GENERIC.replace(
        client_secret=secret, token_endpoint_auth_method="client_secret_basic"
    )
    route = respx_mock.post(GENERIC.token_endpoint).respond(
        400, json={"error": "invalid_client", "error_description": f"wrong secret {secret}"}
    )
    async with TokenClient(provider, retry=FAST) as client:
        with pytest.raises(TokenEndpointError) as caught:
            await client.refresh(LOGIN)
    assert route.calls.last.request.headers["Authorization"].startswith("Basic ")
    assert secret not in " ".join([str(caught.value), repr(caught.value), str(vars(caught.value))])
    assert caught.value.url == GENERIC.token_endpoint


async def test_a_429_without_retry_after_pauses_the_endpoint_a_second(
    respx_mock: respx.MockRouter,
) -> None:
    """The endpoint's other refreshes meet a pause of one second (not none), and the
    in-flight count is back to zero, its peak one."""
    respx_mock.post(GENERIC.token_endpoint).respond(429, json={"error": "slow_down"})
    now = [100.0]
    async with TokenClient(GENERIC, retry=FAST, clock=lambda: now[0]) as client:
        with pytest.raises(TokenEndpointError):
            await client.refresh(LOGIN)
        endpoint = endpoint_for(GENERIC.token_endpoint)
        assert (endpoint.in_flight, endpoint.most_in_flight) == (0, 1)
        now[0] = 100.5
        with pytest.raises(TokenEndpointError, match="slow down") as caught:
            await client.refresh(LOGIN)
        assert caught.value.retry_after == pytest.approx(0.5)
        now[0] = 101.0
        with pytest.raises(TokenEndpointError, match="HTTP 429"):
            await client.refresh(LOGIN)  # the pause is over: a request again


@pytest.mark.parametrize(("raised", "detail"), [("refused", "refused"), ("", "no detail")])
async def test_a_network_error_says_where_what_and_whether_it_was_sent(
    respx_mock: respx.MockRouter, raised: str, detail: str
) -> None:
    """A connection that never opened, retried until the next wait would cross the
    deadline: the error raised names the URL, the failure and its detail (or that there
    was none), and says the request was never sent."""
    url = GENERIC.revocation_endpoint or ""
    route = respx_mock.post(url).mock(side_effect=httpx.ConnectError(raised))
    policy = Spied(attempts=5, deadline=5.0, wait=10.0)
    async with TokenClient(GENERIC, retry=policy) as client:
        with pytest.raises(NetworkError) as caught:
            await client.revoke(LOGIN)
    assert str(caught.value) == f"could not reach {url}: ConnectError: {detail}"
    assert caught.value.sent is False
    assert route.call_count == 1


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[int, list[str]]]:
    """A forward proxy on 127.0.0.1 that answers every request itself; yields its port and
    the URLs it was asked for."""
    asked: list[str] = []
    async with serving("via the proxy", asked) as port:
        yield port, asked


async def test_proxy_settings_are_honoured_for_other_hosts(
    proxy: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY in the environment: a request to another host goes through it (a
    corporate network's proxy), as httpx does by default."""
    port, asked = proxy
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    async with new_http_client(verify=False) as client:
        response = await client.get("http://idp.example/token")
    assert response.text == "via the proxy"
    assert asked == ["http://idp.example/token"]


async def test_certificates_are_verified_by_default() -> None:
    """A server whose certificate no trusted CA signed is refused."""
    ca = trustme.CA()
    async with serve_metadata_document(ca) as document, new_http_client() as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(document.url)


async def test_a_429_pause_lasts_its_retry_after(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(GENERIC.token_endpoint).respond(
        429, json={"error": "slow_down"}, headers={"Retry-After": "30"}
    )
    now = [100.0]
    async with TokenClient(GENERIC, retry=FAST, clock=lambda: now[0]) as client:
        with pytest.raises(TokenEndpointError):
            await client.refresh(LOGIN)
        now[0] = 100.5
        with pytest.raises(TokenEndpointError, match="slow down") as caught:
            await client.refresh(LOGIN)
    assert caught.value.retry_after == pytest.approx(29.5)
