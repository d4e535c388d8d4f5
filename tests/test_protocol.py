"""The sans-I/O protocol core: authorization URL, callback judging, token bodies and answers."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.test_jwt_claims import make_jwt
from vandamme_oauth import (
    AuthData,
    AuthorizationError,
    IssuerMismatchError,
    PkcePair,
    ProviderConfig,
    ReauthenticationRequired,
    StateMismatchError,
    TokenEndpointError,
    TokenError,
)
from vandamme_oauth._protocol import (
    Grant,
    build_authorization_url,
    code_exchange_request,
    error_code,
    parse_callback,
    parse_token_response,
    refresh_request,
    revoke_request,
    token_error,
)

NOW = 1_800_000_000.0
CHATGPT = ProviderConfig.chatgpt()
PKCE = PkcePair(verifier="v" * 86, challenge="c" * 43)
GENERIC = ProviderConfig(
    name="generic",
    issuer="https://idp.example",
    client_id="cid",
    authorization_endpoint="https://idp.example/authorize",
    token_endpoint="https://idp.example/token",
    revocation_endpoint="https://idp.example/revoke",
)


# -- authorization URL ------------------------------------------------------------------------


def test_chatgpt_authorization_url_matches_the_codex_cli_byte_for_byte() -> None:
    """Parameters, order and encoding are those of CHATGPT.md."""
    url = build_authorization_url(
        CHATGPT,
        redirect_uri="http://localhost:1455/auth/callback",
        state="STATE",
        pkce=PKCE,
    )
    assert url == (
        "https://auth.openai.com/oauth/authorize?response_type=code"
        "&client_id=app_EMoamEEZ73f0CkXaXp7hrann"
        "&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback"
        "&scope=openid%20profile%20email%20offline_access%20api.connectors.read"
        "%20api.connectors.invoke"
        f"&code_challenge={'c' * 43}&code_challenge_method=S256"
        "&id_token_add_organizations=true&codex_cli_simplified_flow=true"
        "&state=STATE&originator=codex_cli_rs"
    )


def test_chatgpt_workspace_restriction_and_originator() -> None:
    """allowed_workspace_id is comma-joined after the originator, which is configurable."""
    provider = ProviderConfig.chatgpt(originator="vandamme", allowed_workspace_ids=["w1", "w2"])
    url = build_authorization_url(
        provider, redirect_uri="http://localhost:1457/auth/callback", state="S", pkce=PKCE
    )
    pairs = parse_qsl(urlsplit(url).query)
    assert pairs[-3:] == [
        ("state", "S"),
        ("originator", "vandamme"),
        ("allowed_workspace_id", "w1,w2"),
    ]


def test_generic_authorization_url_and_form_post() -> None:
    """Generic providers get the standard parameters; form_post adds response_mode."""
    url = build_authorization_url(
        GENERIC.replace(response_mode="form_post"),
        redirect_uri="http://127.0.0.1:5000/auth/callback",
        state="S",
        pkce=PKCE,
    )
    assert dict(parse_qsl(urlsplit(url).query)) == {
        "response_type": "code",
        "client_id": "cid",
        "redirect_uri": "http://127.0.0.1:5000/auth/callback",
        "scope": "openid offline_access",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        "state": "S",
        "response_mode": "form_post",
    }


def test_chatgpt_preset_facts() -> None:
    """Ports, redirect host, endpoints and claims follow CHATGPT.md."""
    assert CHATGPT.ports == (1455, 1457)
    assert CHATGPT.redirect_uri(1455) == "http://localhost:1455/auth/callback"
    assert CHATGPT.cancel_busy_port
    assert CHATGPT.token_endpoint == "https://auth.openai.com/oauth/token"
    assert CHATGPT.revocation_endpoint == "https://auth.openai.com/oauth/revoke"
    assert CHATGPT.fallback_lifetime == 8 * 24 * 3600


# -- callback ---------------------------------------------------------------------------------


def judge(params: dict[str, str], *, require_iss: bool = False) -> str:
    return parse_callback(
        params, expected_state="good", issuer="https://idp.example", require_iss=require_iss
    )


def test_callback_returns_the_code() -> None:
    """A matching state, the right iss and a code give the code."""
    assert judge({"state": "good", "code": "C", "iss": "https://idp.example"}) == "C"


@pytest.mark.parametrize("state", [None, "", "bad", "good2", "goo"])
def test_state_is_checked_before_anything_else(state: str | None) -> None:
    """A missing or wrong state is a StateMismatchError even when an error is present."""
    params = {"error": "access_denied", "code": "C"}
    if state is not None:
        params["state"] = state
    with pytest.raises(StateMismatchError):
        judge(params)


def test_error_comes_before_iss_and_code() -> None:
    """With the right state, error= wins and is reported with its description."""
    with pytest.raises(AuthorizationError, match="access_denied: no thanks") as caught:
        judge(
            {
                "state": "good",
                "error": "access_denied",
                "error_description": "no thanks",
                "iss": "https://evil.example",
                "code": "C",
            }
        )
    assert caught.value.error == "access_denied"
    assert caught.value.error_description == "no thanks"


def test_iss_mismatch_and_missing_required_iss() -> None:
    """RFC 9207: a foreign iss is refused; a missing one only when it is required."""
    with pytest.raises(IssuerMismatchError):
        judge({"state": "good", "code": "C", "iss": "https://evil.example"})
    with pytest.raises(IssuerMismatchError):
        judge({"state": "good", "code": "C"}, require_iss=True)
    assert judge({"state": "good", "code": "C"}) == "C"


def test_missing_code() -> None:
    """No code and no error is an AuthorizationError."""
    with pytest.raises(AuthorizationError, match="neither a code nor an error"):
        judge({"state": "good"})


# -- token request bodies ------------------------------------------------------------------------


def test_code_exchange_is_form_encoded_in_codex_order() -> None:
    """The code exchange is a form body: grant_type, code, redirect_uri, client_id, verifier."""
    request = code_exchange_request(
        CHATGPT, code="the code", redirect_uri="http://localhost:1455/auth/callback", verifier="V"
    )
    body, content_type = request.content()
    assert content_type == "application/x-www-form-urlencoded"
    assert body == (
        b"grant_type=authorization_code&code=the%20code"
        b"&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback"
        b"&client_id=app_EMoamEEZ73f0CkXaXp7hrann&code_verifier=V"
    )
    assert "the code" not in repr(request)


def test_chatgpt_refresh_is_json_without_scope() -> None:
    """ChatGPT refreshes with a JSON body of client_id, grant_type, refresh_token."""
    body, content_type = refresh_request(CHATGPT, "RT").content()
    assert content_type == "application/json"
    assert list(json.loads(body).items()) == [
        ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
        ("grant_type", "refresh_token"),
        ("refresh_token", "RT"),
    ]


def test_generic_refresh_is_a_form() -> None:
    """Generic providers refresh with an RFC 6749 form body."""
    body, content_type = refresh_request(GENERIC, "R/T").content()
    assert content_type == "application/x-www-form-urlencoded"
    assert body == b"grant_type=refresh_token&refresh_token=R%2FT&client_id=cid"


def test_revocation_bodies() -> None:
    """RFC 7009 form for generic providers, JSON for ChatGPT; none without an endpoint."""
    generic = revoke_request(GENERIC, "RT", "refresh_token")
    assert generic is not None
    assert generic.content()[0] == b"token=RT&token_type_hint=refresh_token&client_id=cid"
    chatgpt = revoke_request(CHATGPT, "AT", "access_token")
    assert chatgpt is not None
    assert json.loads(chatgpt.content()[0]) == {
        "token": "AT",
        "token_type_hint": "access_token",
        "client_id": "app_EMoamEEZ73f0CkXaXp7hrann",
    }
    assert revoke_request(GENERIC.replace(revocation_endpoint=None), "RT", "x") is None


# -- token responses ----------------------------------------------------------------------------


def parse(
    status: int,
    body: object,
    *,
    provider: ProviderConfig = GENERIC,
    grant: Grant = "authorization_code",
    previous: AuthData | None = None,
) -> AuthData:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_response(
        status, raw, provider=provider, now=NOW, grant=grant, previous=previous
    )


def test_expiry_from_expires_in_then_from_the_jwt_exp() -> None:
    """expires_in gives an absolute expiry; without it the access token's exp is used."""
    assert parse(200, {"access_token": "AT", "expires_in": 60}).expires_at == NOW + 60
    assert parse(200, {"access_token": "AT", "expires_in": "60"}).expires_at == NOW + 60
    jwt = make_jwt({"exp": NOW + 999})
    assert parse(200, {"access_token": jwt}).expires_at == NOW + 999
    assert parse(200, {"access_token": "opaque"}).expires_at is None


def test_chatgpt_identity_comes_from_the_namespaced_claims() -> None:
    """account_id is chatgpt_account_id; email comes from the top level or the profile claim."""
    id_token = make_jwt(
        {
            "https://api.openai.com/auth": {
                "chatgpt_account_id": "acct-9",
                "chatgpt_plan_type": "pro",
            },
            "https://api.openai.com/profile": {"email": "p@example.com"},
            "sub": "user-sub",
        }
    )
    auth = parse(
        200, {"access_token": "AT", "refresh_token": "RT", "id_token": id_token}, provider=CHATGPT
    )
    assert auth.account_id == "acct-9"
    assert auth.email == "p@example.com"
    assert auth.last_refresh == NOW


def test_refresh_merges_into_the_previous_login() -> None:
    """Missing fields are kept from the freshly read login, above all the refresh token."""
    previous = AuthData(
        access_token="old",
        refresh_token="RT1",
        id_token=make_jwt({"sub": "u"}),
        account_id="u",
        email="e@x",
        scope="openid",
    )
    merged = parse(
        200, {"access_token": "new", "expires_in": 10}, grant="refresh_token", previous=previous
    )
    assert (merged.access_token, merged.refresh_token, merged.id_token, merged.account_id) == (
        "new",
        "RT1",
        previous.id_token,
        "u",
    )
    rotated = parse(
        200,
        {"access_token": "new", "refresh_token": "RT2"},
        grant="refresh_token",
        previous=previous,
    )
    assert rotated.refresh_token == "RT2"


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (200, b"<html>oops</html>", TokenError, "not a JSON object"),
        (200, b"[1]", TokenError, "not a JSON object"),
        (200, {"token_type": "Bearer"}, TokenError, "no access_token"),
        (200, {"access_token": ""}, TokenError, "no access_token"),
        (200, {"access_token": "AT", "refresh_token": 5}, TokenError, "refresh_token is not"),
        (200, {"access_token": "AT", "token_type": "mac"}, TokenError, "unsupported token_type"),
        (200, {"access_token": "AT", "expires_in": -1}, TokenError, "non-positive"),
        (200, {"access_token": "AT", "id_token": "not-a-jwt"}, TokenError, "unreadable id_token"),
        (500, b"<html>Internal</html>", TokenEndpointError, "HTTP 500"),
        (429, {"error": "rate_limited"}, TokenEndpointError, "HTTP 429"),
        (
            400,
            {"error": "invalid_request", "error_description": "bad"},
            TokenEndpointError,
            "invalid_request: bad",
        ),
    ],
)
def test_bad_token_answers_raise_typed_errors(
    status: int, body: object, error: type[Exception], message: str
) -> None:
    """Every unusable answer raises a typed error with an actionable message."""
    with pytest.raises(error, match=message):
        parse(status, body)


def test_errors_never_echo_tokens() -> None:
    """A body that echoes a token has it redacted in the error."""
    body = {
        "error": "invalid_request",
        "refresh_token": "SECRET-RT",
        "note": "eyJhbGciOiJI.eyJzdWIiOiJ4In0.sig",
    }
    with pytest.raises(TokenEndpointError) as caught:
        parse(400, body)
    text = str(caught.value) + caught.value.body + repr(caught.value)
    assert "SECRET-RT" not in text
    assert "eyJzdWIiOiJ4In0" not in text


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant"}),
        (401, {"error": "whatever"}),
        (
            401,
            {
                "error": {
                    "message": "Your refresh token has already been used to generate a new "
                    "access token. Please try signing in again.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "refresh_token_reused",
                }
            },
        ),
        (400, {"error": {"code": "refresh_token_expired"}}),
        (400, {"code": "refresh_token_invalidated"}),
    ],
)
def test_permanent_refresh_errors(status: int, body: object) -> None:
    """HTTP 401, invalid_grant and ChatGPT's refresh_token_* codes mean: log in again."""
    error = token_error(status, json.dumps(body).encode(), grant="refresh_token")
    assert isinstance(error, ReauthenticationRequired)
    assert "log in again" in str(error)


@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (503, True), (429, True), (400, False)]
)
def test_other_refresh_errors_are_classified(status: int, transient: bool) -> None:
    """5xx and 429 are transient, other 4xx (not invalid_grant) are not, none is permanent."""
    error = token_error(status, b'{"error":"server_error_x"}', grant="refresh_token")
    assert isinstance(error, TokenEndpointError)
    assert error.transient is transient


def test_error_code_shapes() -> None:
    """error.code, then a string error, then a top-level code."""
    assert error_code({"error": {"code": "a"}}) == "a"
    assert error_code({"error": "b"}) == "b"
    assert error_code({"code": "c"}) == "c"
    assert error_code([1]) is None
