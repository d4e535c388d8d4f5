"""Device login over respx: RFC 8628 polling rules and variants, with a recorded sleep."""

from __future__ import annotations

import httpx
import pytest
import respx

from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthorizationError,
    CallbackTimeoutError,
    DeviceCode,
    DeviceFlow,
    InMemoryAuthStorage,
    ValidationError,
)

DEVICE = GENERIC.replace(device_authorization_endpoint="https://idp.example/device")
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Sleeps:
    """A sleep that records how long it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))


def device_answer(**extra: object) -> dict[str, object]:
    return {
        "device_code": "DC",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://idp.example/activate",
        "verification_uri_complete": "https://idp.example/activate?user_code=ABCD-EFGH",
        "expires_in": 600,
        **extra,
    }


async def test_polls_with_margin_and_slows_down(respx_mock: respx.MockRouter) -> None:
    """Default interval 5 s + 20 %; slow_down adds 5 s for this and later polls; the code is
    shown once; the tokens are stored."""
    respx_mock.post("https://idp.example/device").respond(json=device_answer())
    token = respx_mock.post(DEVICE.token_endpoint)
    token.side_effect = [
        httpx.Response(400, json={"error": "slow_down"}),
        httpx.Response(400, json={"error": "authorization_pending"}),
        httpx.Response(200, json={"access_token": "AT", "refresh_token": "RT", "expires_in": 60}),
    ]
    shown: list[DeviceCode] = []
    sleeps = Sleeps()
    storage = InMemoryAuthStorage()
    async with DeviceFlow(DEVICE, storage, on_code=shown.append, sleep=sleeps) as flow:
        auth = await flow.authenticate()
    assert sleeps.waits == [6.0, 12.0, 12.0]
    assert [c.user_code for c in shown] == ["ABCD-EFGH"]
    assert "DC" not in repr(shown[0])
    assert await storage.read_auth() == auth
    form = dict(httpx.QueryParams(token.calls.last.request.content.decode()))
    assert form == {"grant_type": GRANT, "device_code": "DC", "client_id": "cid"}
    start = dict(httpx.QueryParams(respx_mock.calls[0].request.content.decode()))
    assert start == {"client_id": "cid", "scope": "openid offline_access"}


async def test_server_interval_is_honoured(respx_mock: respx.MockRouter) -> None:
    """The server's interval (plus the margin) is used."""
    respx_mock.post("https://idp.example/device").respond(json=device_answer(interval=2))
    respx_mock.post(DEVICE.token_endpoint).respond(json={"access_token": "AT"})
    sleeps = Sleeps()
    async with DeviceFlow(DEVICE, InMemoryAuthStorage(), sleep=sleeps) as flow:
        await flow.authenticate()
    assert sleeps.waits == [2.4]


@pytest.mark.parametrize(
    ("error", "raised"),
    [("access_denied", AuthorizationError), ("expired_token", CallbackTimeoutError)],
)
async def test_denied_or_expired_stops(
    respx_mock: respx.MockRouter, error: str, raised: type[Exception]
) -> None:
    """access_denied and expired_token end the login; nothing is stored."""
    respx_mock.post("https://idp.example/device").respond(json=device_answer())
    respx_mock.post(DEVICE.token_endpoint).respond(400, json={"error": error})
    storage = InMemoryAuthStorage()
    async with DeviceFlow(DEVICE, storage, sleep=Sleeps()) as flow:
        with pytest.raises(raised):
            await flow.authenticate()
    assert await storage.read_auth() is None


async def test_network_errors_back_off(respx_mock: respx.MockRouter) -> None:
    """A failed poll doubles the wait (up to a cap) and polling goes on."""
    respx_mock.post("https://idp.example/device").respond(json=device_answer(interval=1))
    token = respx_mock.post(DEVICE.token_endpoint)
    token.side_effect = [
        httpx.ReadTimeout("x"),
        httpx.ReadTimeout("x"),
        httpx.Response(200, json={"access_token": "AT"}),
    ]
    sleeps = Sleeps()
    async with DeviceFlow(DEVICE, InMemoryAuthStorage(), sleep=sleeps) as flow:
        await flow.authenticate()
    assert sleeps.waits == [1.2, 2.4, 4.8]


async def test_code_expiry_ends_polling(respx_mock: respx.MockRouter) -> None:
    """When the next poll would fall after the code's expiry, the login ends with a timeout."""
    respx_mock.post("https://idp.example/device").respond(json=device_answer(expires_in=10))
    respx_mock.post(DEVICE.token_endpoint).respond(400, json={"error": "authorization_pending"})
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    async with DeviceFlow(DEVICE, InMemoryAuthStorage(), sleep=sleep, clock=lambda: now[0]) as f:
        with pytest.raises(CallbackTimeoutError, match="expired"):
            await f.authenticate()
    assert now[0] == 6.0


def test_provider_without_device_endpoint() -> None:
    """A provider that offers no device login is refused up front."""
    with pytest.raises(ValidationError, match="no device login"):
        DeviceFlow(GENERIC, InMemoryAuthStorage())


async def test_a_variant_object_replaces_the_standard_requests(
    respx_mock: respx.MockRouter,
) -> None:
    """DeviceFlow takes the device variant as a strategy object: its requests are used, the
    polling loop (margin, pending) stays the flow's, and the login is stored."""
    from vandamme_oauth import AuthData

    class Scripted:
        def __init__(self) -> None:
            self.polls = 0

        def available(self, provider: object) -> bool:
            return True

        async def request_code(self, tokens: object) -> DeviceCode:
            return DeviceCode("UC", "https://elsewhere/go", None, 60.0, 2.0, "DC")

        async def poll(self, tokens: object, code: DeviceCode) -> AuthData | str:
            self.polls += 1
            return "pending" if self.polls < 3 else AuthData(access_token="AT", last_refresh=1.0)

    variant, sleeps, storage = Scripted(), Sleeps(), InMemoryAuthStorage()
    async with DeviceFlow(GENERIC, storage, variant=variant, sleep=sleeps) as flow:
        auth = await flow.authenticate()
    assert (auth.access_token, variant.polls) == ("AT", 3)
    assert sleeps.waits == [2.4, 2.4, 2.4]
    assert await storage.read_auth() == auth
    assert not respx_mock.calls  # no standard request was made
