"""WebLogin's login cookie (itsdangerous) and callback checks, with a fake clock and a
respx token endpoint: expiry, forgery, another app's key, replay."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import respx

from tests.conftest import FakeClock
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthorizationError,
    InMemoryAuthStorage,
    StateMismatchError,
    ValidationError,
    WebLogin,
)

SECRET = "a web app's cookie secret of 32+ bytes"


def web_login(clock: FakeClock, storage: InMemoryAuthStorage, secret: str = SECRET) -> WebLogin:
    return WebLogin(
        GENERIC,
        redirect_uri="https://app.example/auth/callback",
        secret=secret,
        storage_for=lambda user: storage,
        clock=clock,
    )


def callback_for(url: str) -> dict[str, str]:
    state = parse_qs(urlsplit(url).query)["state"][0]
    return {"code": "CODE", "state": state}


@respx.mock
async def test_a_login_completes_once_within_max_age() -> None:
    """The cookie binds state, verifier and user; the exchange sends that verifier; a replay
    of the same cookie is refused; the cookie holds no token."""
    route = respx.post(GENERIC.token_endpoint).respond(
        json={"access_token": "AT", "refresh_token": "RT"}
    )
    clock, storage = FakeClock(1_800_000_000.0), InMemoryAuthStorage()
    login = web_login(clock, storage)
    url, cookie = login.begin("bob")
    clock.advance(599)
    user, auth = await login.complete(callback_for(url), cookie)
    assert (user, auth.access_token) == ("bob", "AT")
    assert await storage.read_auth() == auth
    sent = dict(parse_qs(route.calls.last.request.content.decode()))
    assert sent["code"] == ["CODE"]
    assert len(sent["code_verifier"][0]) == 86
    with pytest.raises(StateMismatchError, match="already completed"):
        await login.complete(callback_for(url), cookie)
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda c: None, StateMismatchError, "cookie missing"),
        (lambda c: "", StateMismatchError, "cookie missing"),
        (
            lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),
            StateMismatchError,
            "not valid",
        ),
        (lambda c: "x" + c, StateMismatchError, "not valid"),
        (lambda c: "garbage", StateMismatchError, "not valid"),
    ],
)
async def test_missing_or_forged_cookies_are_refused(
    damage: object, error: type[Exception], message: str
) -> None:
    """No cookie, a changed signature or payload, or junk: refused before any request."""
    clock, storage = FakeClock(1_800_000_000.0), InMemoryAuthStorage()
    login = web_login(clock, storage)
    url, cookie = login.begin("eve")
    with pytest.raises(error, match=message):
        await login.complete(callback_for(url), damage(cookie))  # type: ignore[operator]
    assert await storage.read_auth() is None


async def test_an_expired_cookie_and_another_apps_cookie_are_refused() -> None:
    """Past max_age the login has expired; a cookie signed with another key is forged."""
    clock, storage = FakeClock(1_800_000_000.0), InMemoryAuthStorage()
    login = web_login(clock, storage)
    url, cookie = login.begin("bob")
    clock.advance(601)
    with pytest.raises(AuthorizationError, match="took too long and expired"):
        await login.complete(callback_for(url), cookie)
    other = web_login(clock, storage, secret="another app's secret, 32+ bytes!!")
    other_url, other_cookie = other.begin("bob")
    with pytest.raises(StateMismatchError, match="not valid"):
        await web_login(clock, storage).complete(callback_for(other_url), other_cookie)


def test_the_cookie_secret_must_be_long_enough() -> None:
    """A short secret is a configuration error."""
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        web_login(FakeClock(0.0), InMemoryAuthStorage(), secret="short")
