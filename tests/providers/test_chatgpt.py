"""The ChatGPT dialect (vandamme_oauth.providers.chatgpt) against the wire facts of
CHATGPT.md: device variant, typed claims, backend headers, usage limits, the API-key
exchange; over respx where HTTP is involved."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from tests.test_device import Sleeps
from tests.test_jwt_claims import make_jwt
from tests.test_protocol import CHATGPT, GENERIC
from vandamme_oauth import (
    AuthData,
    AuthorizationError,
    DeviceCode,
    DeviceFlow,
    Dialect,
    InMemoryAuthStorage,
    ProviderConfig,
    TokenClient,
    TokenError,
    dialect_named,
)
from vandamme_oauth._token_response import parse_token_response
from vandamme_oauth.providers import chatgpt

if TYPE_CHECKING:
    from collections.abc import Mapping

AUTH = "https://api.openai.com/auth"


def id_token(**auth_claims: Any) -> str:
    return make_jwt({"sub": "u", "email": "u@example.com", AUTH: auth_claims})


def test_the_preset_carries_the_chatgpt_dialect_found_by_its_entry_point() -> None:
    """The preset's dialect is the one the registry finds under "chatgpt"; a saved profile
    stores its name and brings it back; a generic provider speaks the standard dialect."""
    assert dialect_named("chatgpt") is chatgpt.DIALECT is CHATGPT.dialect
    assert CHATGPT.to_dict()["dialect"] == "chatgpt"
    assert ProviderConfig.from_dict(CHATGPT.to_dict()).dialect is chatgpt.DIALECT
    assert chatgpt.is_chatgpt(CHATGPT)
    assert chatgpt.is_chatgpt(CHATGPT.replace(name="work"))
    assert not chatgpt.is_chatgpt(GENERIC)
    assert CHATGPT.dialect.device_variant() is chatgpt.DEVICE
    assert type(GENERIC.dialect) is Dialect
    assert GENERIC.dialect.device_variant() is None
    assert chatgpt.preset() == CHATGPT == ProviderConfig.chatgpt()
    assert CHATGPT.dialect.permanent_refresh_errors == {
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
    }


def test_the_login_command_of_the_preset_names_chatgpt() -> None:
    """``vandamme-oauth login chatgpt`` (with --name for another name); another client at
    ChatGPT's issuer gets the generic command."""
    assert CHATGPT.dialect.login_command(CHATGPT) == "vandamme-oauth login chatgpt"
    work = CHATGPT.replace(name="work")
    assert CHATGPT.dialect.login_command(work) == "vandamme-oauth login chatgpt --name work"
    other = CHATGPT.replace(client_id="mine", scopes=("openid",))
    assert CHATGPT.dialect.login_command(other) == (
        "vandamme-oauth login --issuer https://auth.openai.com --client-id mine "
        "--scope openid --name chatgpt"
    )


def test_typed_claims_come_from_the_id_token() -> None:
    """Plan, user, organization and project are typed attributes of the login; the user id
    falls back to user_id; they survive storage and a refresh that brings no ID token."""
    token = id_token(
        chatgpt_account_id="acct",
        chatgpt_plan_type="pro",
        user_id="user-fallback",
        organization_id="org-1",
        project_id="proj-1",
    )
    body = json.dumps({"access_token": "AT", "refresh_token": "RT", "id_token": token})
    auth = parse_token_response(
        200, body.encode(), provider=CHATGPT, now=1000.0, grant="authorization_code"
    )
    assert (auth.account_id, auth.plan_type, auth.user_id) == ("acct", "pro", "user-fallback")
    assert (auth.organization_id, auth.project_id) == ("org-1", "proj-1")
    assert AuthData.from_dict(auth.to_dict()) == auth
    assert auth.to_dict()["claims"] == {
        "plan_type": "pro",
        "user_id": "user-fallback",
        "organization_id": "org-1",
        "project_id": "proj-1",
    }
    with_key = auth.replace(api_key="sk-proj-SECRETKEY")
    assert "SECRETKEY" not in repr(with_key)
    refreshed = parse_token_response(
        200,
        b'{"access_token": "AT2"}',
        provider=CHATGPT,
        now=2000.0,
        grant="refresh_token",
        previous=with_key,
    )
    assert refreshed.plan_type == "pro"
    assert refreshed.project_id == "proj-1"
    assert refreshed.api_key == "sk-proj-SECRETKEY"
    assert refreshed.refresh_token == "RT"  # every field of a refresh answer is optional
    preferred = parse_token_response(
        200,
        json.dumps(
            {"access_token": "A", "id_token": id_token(chatgpt_user_id="cu", user_id="u")}
        ).encode(),
        provider=CHATGPT,
        now=1.0,
        grant="authorization_code",
    )
    assert preferred.user_id == "cu"
    generic = parse_token_response(
        200,
        json.dumps({"access_token": "A", "id_token": token}).encode(),
        provider=GENERIC,
        now=1.0,
        grant="authorization_code",
    )
    assert (generic.plan_type, generic.user_id) == (None, None)  # no claim paths, no claims
    assert "claims" not in generic.to_dict()


def test_plan_of_reads_old_logins_too() -> None:
    """A login stored before plans were typed still shows its plan (from the ID token)."""
    assert chatgpt.plan_of(AuthData(access_token="A", id_token=id_token(chatgpt_plan_type="team")))
    assert chatgpt.plan_of(AuthData(access_token="A", plan_type="plus")) == "plus"
    assert chatgpt.plan_of(AuthData(access_token="A", id_token="opaque")) is None


def test_backend_headers_as_the_codex_cli_sends_them() -> None:
    """Authorization, ChatGPT-Account-ID, originator and the Codex User-Agent form; a
    session_id only when given; originator and User-Agent configurable."""
    auth = AuthData(access_token="AT", account_id="acct-1")
    headers = chatgpt.backend_headers(auth)
    assert set(headers) == {"Authorization", "ChatGPT-Account-ID", "originator", "User-Agent"}
    assert headers["Authorization"] == "Bearer AT"
    assert headers["ChatGPT-Account-ID"] == "acct-1"
    assert headers["originator"] == "codex_cli_rs"
    assert re.fullmatch(r"codex_cli_rs/\S+ \(\S+ \S+; \S+\) vandamme-oauth", headers["User-Agent"])
    custom = chatgpt.backend_headers(
        AuthData(access_token="AT"), originator="my_tool", agent="my_tool/1.0", session_id="s-1"
    )
    assert custom == {
        "Authorization": "Bearer AT",
        "originator": "my_tool",
        "User-Agent": "my_tool/1.0",
        "session_id": "s-1",
    }
    assert chatgpt.user_agent("o", "9.9").startswith("o/9.9 (")


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "body", "resets_at", "message"),
    [
        (200, {}, b"{}", None, None),  # not a limit: None (checked below)
        (429, {}, b'{"resets_at": 1800000600}', NOW + 600, None),
        (429, {}, b'{"resets_in_seconds": 90}', NOW + 90, None),
        (
            429,
            {},
            b'{"error": {"message": "You hit the limit", "resets_in_seconds": 30}}',
            NOW + 30,
            "You hit the limit",
        ),
        (429, {"Retry-After": "120"}, b"too many", NOW + 120, None),
        (429, {"retry-after": "Fri, 15 Jan 2027 08:00:00 GMT"}, b"", NOW, None),  # = NOW
        (429, {}, b'{"resets_in_seconds": -5}', None, None),
        (429, {}, b'{"resets_in_seconds": true}', None, None),
        (429, {}, b'{"resets_at": 1e400}', None, None),
        (429, {"Retry-After": "soon"}, b"{}", None, None),
    ],
)
def test_usage_limits_are_read_from_the_body_or_retry_after(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    resets_at: float | None,
    message: str | None,
) -> None:
    """A 429 gives a typed value with the reset time; anything else gives None; numbers
    that are not times are ignored rather than trusted."""
    limit = chatgpt.usage_limit(status, headers, body, now=NOW)
    if status != 429:
        assert limit is None
        return
    assert limit is not None
    assert limit.resets_at == resets_at
    assert limit.message == message


def test_usage_limit_retry_after_rounds_up() -> None:
    """retry_after() is whole seconds, never early."""
    limit = chatgpt.UsageLimit(resets_at=NOW + 10.2)
    assert limit.retry_after(NOW) == 11
    assert limit.retry_after(NOW + 20) == 0
    assert chatgpt.UsageLimit(resets_at=None).retry_after(NOW) is None


async def test_api_key_exchange_sends_the_token_exchange_form(
    respx_mock: respx.MockRouter,
) -> None:
    """The form of CHATGPT.md, in its order; the answer's access_token is the key."""
    route = respx_mock.post(CHATGPT.token_endpoint).respond(
        json={"access_token": "sk-proj-KEY123", "token_type": "bearer"}
    )
    auth = AuthData(access_token="AT", id_token="ID.TOKEN.VALUE")
    async with TokenClient(CHATGPT) as client:
        key = await chatgpt.exchange_api_key(client, auth)
    assert key == "sk-proj-KEY123"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(request.content.decode()) == [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("client_id", CHATGPT.client_id),
        ("requested_token", "openai-api-key"),
        ("subject_token", "ID.TOKEN.VALUE"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
    ]


async def test_a_refused_api_key_exchange_is_a_token_error_without_the_id_token(
    respx_mock: respx.MockRouter,
) -> None:
    """A refusal (even one echoing the ID token) or an answer without a key is a
    TokenError whose message does not contain the ID token; sent once."""
    subject = "eyJhbGciOi.SUBJECTTOKEN.sig"
    route = respx_mock.post(CHATGPT.token_endpoint).respond(
        400, json={"error": "invalid_request", "echo": subject}
    )
    async with TokenClient(CHATGPT) as client:
        with pytest.raises(TokenError) as caught:
            await chatgpt.exchange_api_key(client, AuthData(access_token="AT", id_token=subject))
        assert subject not in str(caught.value)
        assert "HTTP 400" in str(caught.value)
        assert route.call_count == 1
        route.respond(200, json={"token_type": "bearer"})
        with pytest.raises(TokenError, match="carries no key"):
            await chatgpt.exchange_api_key(client, AuthData(access_token="AT", id_token=subject))
        with pytest.raises(TokenError, match="no ID token"):
            await chatgpt.exchange_api_key(client, AuthData(access_token="AT"))
    assert route.call_count == 2


async def test_chatgpt_device_login(respx_mock: respx.MockRouter) -> None:
    """ChatGPT: JSON usercode request, 403 while pending, then a normal code exchange with the
    deviceauth/callback redirect and the verifier the server returned."""
    usercode = respx_mock.post("https://auth.openai.com/api/accounts/deviceauth/usercode")
    usercode.respond(json={"device_auth_id": "dev-1", "usercode": "ZZ-99", "interval": "3"})
    poll = respx_mock.post("https://auth.openai.com/api/accounts/deviceauth/token")
    poll.side_effect = [
        httpx.Response(403),
        httpx.Response(
            200, json={"authorization_code": "AC", "code_challenge": "CH", "code_verifier": "VER"}
        ),
    ]
    exchange = respx_mock.post(CHATGPT.token_endpoint).respond(
        json={"access_token": "AT", "refresh_token": "RT"}
    )
    shown: list[DeviceCode] = []
    sleeps = Sleeps()
    async with DeviceFlow(
        CHATGPT, InMemoryAuthStorage(), on_code=shown.append, sleep=sleeps
    ) as flow:
        auth = await flow.authenticate()
    assert auth.refresh_token == "RT"
    assert json.loads(usercode.calls.last.request.content) == {"client_id": CHATGPT.client_id}
    assert json.loads(poll.calls.last.request.content) == {
        "device_auth_id": "dev-1",
        "user_code": "ZZ-99",
    }
    assert shown[0].verification_uri == "https://auth.openai.com/codex/device"
    assert sleeps.waits == [3.6, 3.6]
    form = dict(httpx.QueryParams(exchange.calls.last.request.content.decode()))
    assert form == {
        "grant_type": "authorization_code",
        "code": "AC",
        "redirect_uri": "https://auth.openai.com/deviceauth/callback",
        "client_id": CHATGPT.client_id,
        "code_verifier": "VER",
    }


async def test_chatgpt_device_login_not_enabled(respx_mock: respx.MockRouter) -> None:
    """404 on the usercode request says how to enable device login."""
    respx_mock.post("https://auth.openai.com/api/accounts/deviceauth/usercode").respond(404)
    async with DeviceFlow(CHATGPT, InMemoryAuthStorage(), sleep=Sleeps()) as flow:
        with pytest.raises(AuthorizationError, match="security settings"):
            await flow.authenticate()


def test_a_refresh_with_a_new_id_token_updates_the_claims() -> None:
    """Claims the new ID token names replace the old ones; the ones it lacks are kept."""
    previous = AuthData(
        access_token="AT", refresh_token="RT", plan_type="plus", project_id="p-1", api_key="k"
    )
    body = json.dumps({"access_token": "AT2", "id_token": id_token(chatgpt_plan_type="pro")})
    refreshed = parse_token_response(
        200, body.encode(), provider=CHATGPT, now=1.0, grant="refresh_token", previous=previous
    )
    assert (refreshed.plan_type, refreshed.project_id, refreshed.api_key) == ("pro", "p-1", "k")
