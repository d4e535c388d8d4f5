"""What the token clients of one token endpoint share in an event loop: one HTTP client
that lives as long as one of them uses it, and the pause a 429 set, to the instant. The
requests themselves are in tests/integration/test_endpoints.py (a real server)."""

from __future__ import annotations

import httpx
import pytest

from tests.test_protocol import GENERIC
from vandamme_oauth import TokenClient, TokenEndpointError
from vandamme_oauth._endpoints import MAX_PAUSE, Endpoint, endpoint_for, origin_of


def test_an_origin_is_scheme_host_and_port_in_lower_case() -> None:
    assert origin_of("HTTPS://Auth.Example.COM:8443/oauth/token?x=1") == (
        "https://auth.example.com:8443"
    )
    assert origin_of("http://127.0.0.1:9/token") == "http://127.0.0.1:9"


async def test_token_endpoints_of_one_origin_share_one_endpoint() -> None:
    """Paths and case do not matter; another port is another endpoint. The first caller's
    bound is the endpoint's."""
    one = endpoint_for("https://IdP.example/token", max_refreshes=3)
    assert endpoint_for("https://idp.example/other/token") is one
    assert one.origin == "https://idp.example"
    assert one.max_refreshes == 3
    assert endpoint_for("https://idp.example:8443/token") is not one


def client_of(endpoint: Endpoint) -> httpx.AsyncClient | None:
    """The endpoint's client now (a call, so that type checkers do not carry over what an
    earlier assertion said about the attribute)."""
    return endpoint.client


def closed(client: httpx.AsyncClient) -> bool:
    return client.is_closed


async def test_the_shared_client_lives_while_one_token_client_uses_it() -> None:
    """Two token clients of one endpoint get one HTTP client; the first to close leaves it
    open for the other, the last closes it, and the next user gets a new one."""
    first, second = TokenClient(GENERIC), TokenClient(GENERIC)
    await first.open()
    await second.open()
    endpoint = first.endpoint()
    assert second.endpoint() is endpoint
    shared = endpoint.client
    assert shared is not None
    assert endpoint.users == 2
    await first.aclose()
    await first.aclose()  # idempotent: it does not leave twice
    assert endpoint.users == 1
    assert client_of(endpoint) is shared
    assert not closed(shared)
    await second.aclose()
    assert endpoint.users == 0
    assert client_of(endpoint) is None
    assert closed(shared)
    async with TokenClient(GENERIC) as third:
        await third.open()
        fresh = client_of(endpoint)
        assert fresh is not None
        assert fresh is not shared
        assert not fresh.is_closed
    assert client_of(endpoint) is None


async def test_a_client_of_your_own_is_not_shared_nor_closed() -> None:
    """A token client given an HTTP client uses it alone and leaves it open."""
    async with httpx.AsyncClient() as yours:
        async with TokenClient(GENERIC, http_client=yours) as client:
            await client.open()
            assert client.endpoint().users == 0
            assert client.endpoint().client is None
        assert not yours.is_closed


def test_a_pause_lasts_to_the_instant_and_says_how_long_is_left() -> None:
    """A 429's pause of 30 s at t=100: a refresh at 129.5 is refused with 0.5 s left, one
    at 130 goes ahead."""
    endpoint = Endpoint("https://idp.example", slots=None, max_refreshes=1)  # type: ignore[arg-type]
    endpoint.check_pause(0.0)  # never paused
    endpoint.pause(30, now=100.0)
    with pytest.raises(TokenEndpointError) as caught:
        endpoint.check_pause(129.5)
    assert caught.value.status_code == 429
    assert caught.value.retry_after == pytest.approx(0.5)
    assert str(caught.value) == (
        "the token endpoint https://idp.example asked us to slow down (HTTP 429); "
        "every refresh there waits 0.5 s more"
    )
    endpoint.check_pause(130.0)


def test_a_pause_is_capped_and_never_shortened() -> None:
    """A Retry-After of an hour pauses a minute; a shorter pause that comes later does not
    end a longer one."""
    endpoint = Endpoint("https://idp.example", slots=None, max_refreshes=1)  # type: ignore[arg-type]
    endpoint.pause(3600, now=0.0)
    with pytest.raises(TokenEndpointError):
        endpoint.check_pause(MAX_PAUSE - 0.1)
    endpoint.check_pause(MAX_PAUSE)
    endpoint.pause(5, now=100.0)
    endpoint.pause(1, now=101.0)
    with pytest.raises(TokenEndpointError):
        endpoint.check_pause(104.9)
    endpoint.check_pause(105.0)
