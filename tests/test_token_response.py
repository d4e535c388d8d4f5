"""Token-endpoint answers: expiry, identity, merging, and error classification."""

from __future__ import annotations

import json

import pytest

from tests.test_jwt_claims import make_jwt
from tests.test_protocol import CHATGPT, GENERIC, NOW
from vandamme_oauth import (
    AuthData,
    ProviderConfig,
    ReauthenticationRequired,
    TokenEndpointError,
    TokenError,
)
from vandamme_oauth._token_response import Grant, error_code, parse_token_response, token_error


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
        (
            200,
            {"access_token": "AT", "expires_in": -1},
            TokenError,
            "expires_in that is not positive",
        ),
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
    """HTTP 401, invalid_grant and the ChatGPT dialect's refresh_token_* codes mean: log in
    again (the dialect's codes through its answer, as the token client passes them)."""
    permanent = CHATGPT.dialect.permanent_refresh_errors
    error = token_error(
        status, json.dumps(body).encode(), grant="refresh_token", permanent=permanent
    )
    assert isinstance(error, ReauthenticationRequired)
    assert "log in again" in str(error)
    with pytest.raises(ReauthenticationRequired):
        parse_token_response(
            status,
            json.dumps(body).encode(),
            provider=CHATGPT,
            now=NOW,
            grant="refresh_token",
        )


@pytest.mark.parametrize("code", ["refresh_token_expired", "refresh_token_reused"])
def test_a_dialects_codes_are_not_permanent_for_other_providers(code: str) -> None:
    """ChatGPT's refresh_token_* codes are ChatGPT's: from a standard provider they are a
    non-transient refusal, not a dead refresh token."""
    body = json.dumps({"error": code}).encode()
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(400, body, provider=GENERIC, now=NOW, grant="refresh_token")
    assert not isinstance(caught.value, ReauthenticationRequired)
    assert caught.value.transient is False


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


@pytest.mark.parametrize(
    ("status", "body", "grant", "message", "description"),
    [
        (
            503,
            b'{"error": "temporarily_unavailable", "error_description": "try later"}',
            "refresh_token",
            "the token endpoint answered HTTP 503 to the refresh_token request with "
            "temporarily_unavailable: try later",
            "try later",
        ),
        (
            400,
            b'{"error": {"message": "bad", "code": "weird"}}',
            "authorization_code",
            "the token endpoint answered HTTP 400 to the authorization_code request with "
            "weird: bad",
            "bad",
        ),
        (
            500,
            b"{}",
            "authorization_code",
            "the token endpoint answered HTTP 500 to the authorization_code request with "
            "no error code",
            None,
        ),
        (
            502,
            b"<html>Bad gateway</html>",
            "refresh_token",
            "the token endpoint answered HTTP 502 to the refresh_token request with a non-JSON "
            "answer: '<html>Bad gateway</html>'",
            None,
        ),
    ],
)
def test_endpoint_errors_say_what_the_server_answered(
    status: int, body: bytes, grant: Grant, message: str, description: str | None
) -> None:
    """The message names the status, the grant and the server's code and description."""
    error = token_error(status, body, grant=grant, url="https://idp.example/token")
    assert isinstance(error, TokenEndpointError)
    assert str(error) == message
    assert error.error_description == description
    assert error.url == "https://idp.example/token"
    assert error.status_code == status


def test_permanent_refusal_says_to_log_in_again() -> None:
    """A dead refresh token's message names the code and the next step."""
    error = token_error(400, b'{"error": "invalid_grant"}', grant="refresh_token")
    assert isinstance(error, ReauthenticationRequired)
    assert str(error) == "the provider rejected the refresh token (invalid_grant); log in again"
    assert error.status_code == 400
    unnamed = token_error(401, b"", grant="refresh_token")
    assert str(unnamed) == "the provider rejected the refresh token (HTTP 401); log in again"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(None, "Bearer"), ("bearer", "Bearer"), ("BEARER", "Bearer"), ("DPoP", "DPoP")],
)
def test_token_type_is_normalised(sent: str | None, kept: str) -> None:
    """Bearer in any case becomes "Bearer" (RFC 6749 7.1: case-insensitive); DPoP is kept
    as sent; no token_type means Bearer."""
    body: dict[str, object] = {"access_token": "AT"}
    if sent is not None:
        body["token_type"] = sent
    assert parse(200, body).token_type == kept


def test_a_refresh_answer_keeps_what_it_does_not_repeat() -> None:
    """scope, email, account and id_token missing from a refresh answer are kept from the
    login it refreshed; what the answer carries wins."""
    previous = AuthData(
        access_token="OLD",
        refresh_token="RT",
        id_token=make_jwt({"sub": "alice", "email": "alice@example.test"}),
        account_id="alice",
        email="alice@example.test",
        scope="openid email",
    )
    bare = parse(200, {"access_token": "NEW"}, grant="refresh_token", previous=previous)
    assert (bare.scope, bare.email, bare.account_id, bare.id_token, bare.refresh_token) == (
        previous.scope,
        previous.email,
        previous.account_id,
        previous.id_token,
        "RT",
    )
    full = parse(
        200,
        {
            "access_token": "NEW",
            "scope": "openid",
            "id_token": make_jwt({"sub": "bob", "email": "bob@example.test"}),
        },
        grant="refresh_token",
        previous=previous,
    )
    assert (full.scope, full.email, full.account_id) == ("openid", "bob@example.test", "bob")
    assert parse(200, {"access_token": "AT", "scope": "a b"}).scope == "a b"


def test_a_broken_200_answer_is_quoted_redacted_and_short() -> None:
    """A 200 answer that is not JSON: the message quotes at most 80 characters of it, with
    the secrets we sent replaced, and bytes that are not UTF-8 do not break it."""
    secret = "code-value-0123456789"
    body = b"\xff<html>" + secret.encode() + b"x" * 200
    with pytest.raises(TokenError) as caught:
        parse_token_response(
            200,
            body,
            provider=GENERIC,
            now=NOW,
            grant="authorization_code",
            secrets=(secret,),
        )
    message = str(caught.value)
    assert message.startswith(
        "the token endpoint's authorization_code answer is not a JSON object: "
        "'\ufffd<html>[redacted]x"
    )
    assert secret not in message
    assert message.endswith("xxx…'")
    assert len(message) < 160


def test_an_unusable_expires_in_names_the_grant() -> None:
    """The message says which answer was wrong."""
    with pytest.raises(TokenError) as caught:
        parse(200, {"access_token": "AT", "expires_in": -1}, grant="refresh_token")
    assert str(caught.value) == (
        "the token endpoint's refresh_token answer has an expires_in that is not positive"
    )


def test_identity_takes_only_non_empty_strings_and_the_first_path_found() -> None:
    """A claim that is not a non-empty string is no account or email; of several email
    paths the first found wins; claims of a JWT access token count when there is no ID
    token; an access token that only looks like a JWT is ignored."""
    weird = make_jwt({"sub": 42, "email": ""})
    assert parse(200, {"access_token": "AT", "id_token": weird}).account_id is None
    assert parse(200, {"access_token": "AT", "id_token": weird}).email is None
    numeric_email = make_jwt({"sub": "s", "email": 5})
    assert parse(200, {"access_token": "AT", "id_token": numeric_email}).email is None
    both = make_jwt(
        {"sub": "s", "email": "top@x.test", "https://api.openai.com/profile": {"email": "p@x.test"}}
    )
    assert parse(200, {"access_token": "AT", "id_token": both}, provider=CHATGPT).email == (
        "top@x.test"
    )
    from_access = make_jwt({"sub": "from-access", "email": "a@x.test"})
    auth = parse(200, {"access_token": from_access})
    assert (auth.account_id, auth.email) == ("from-access", "a@x.test")
    fake = "eyJhbGciOiJub25lIn0.not-base64-json!.sig"
    assert parse(200, {"access_token": fake}).account_id is None


def test_an_access_token_exp_that_is_no_time_gives_no_expiry() -> None:
    """Without expires_in, a JWT access token whose exp is not a time means: unknown."""
    token = make_jwt({"sub": "s", "exp": "tomorrow"})
    assert parse(200, {"access_token": token}).expires_at is None


def test_error_codes_must_be_strings() -> None:
    """A numeric code (in an error object or at the top level) is no code."""
    assert error_code({"error": {"code": 5}}) is None
    assert error_code({"code": 7}) is None
    assert error_code({"error": {"code": "c"}}) == "c"


def test_refusals_keep_code_description_url_and_redact_what_was_sent() -> None:
    """Permanent and other refusals carry the error code and description; the URL is the
    token endpoint's; a secret the request carried is redacted from message and body."""
    body = json.dumps(
        {"error": "invalid_grant", "error_description": "token RTsecret123 is dead"}
    ).encode()
    with pytest.raises(ReauthenticationRequired) as dead:
        parse_token_response(
            400, body, provider=GENERIC, now=NOW, grant="refresh_token", secrets=["RTsecret123"]
        )
    assert (dead.value.error, dead.value.error_description) == (
        "invalid_grant",
        "token [redacted] is dead",
    )
    other = json.dumps(
        {"error": "server_error", "error_description": "retry RTsecret123 later"}
    ).encode()
    with pytest.raises(TokenEndpointError) as failed:
        parse_token_response(
            500,
            other,
            provider=GENERIC,
            now=NOW,
            grant="refresh_token",
            url="https://idp.example/token",
            secrets=["RTsecret123"],
        )
    error = failed.value
    assert (error.error, error.error_description) == ("server_error", "retry [redacted] later")
    assert error.url == "https://idp.example/token"
    assert "RTsecret123" not in (error.body or "")
    assert "RTsecret123" not in str(error)


def test_descriptions_are_cut_at_200_characters_and_non_json_answers_at_120() -> None:
    """Long texts from a server are cut (what a user sees stays short)."""
    long = json.dumps({"error": "e", "error_description": "d" * 201}).encode()
    assert token_error(400, long, grant="authorization_code").error_description == ("d" * 200 + "…")
    html = b"<html>" + b"x" * 200
    with pytest.raises(TokenEndpointError) as caught:
        raise token_error(502, html, grant="authorization_code")
    assert str(caught.value) == (
        "the token endpoint answered HTTP 502 to the authorization_code request with a "
        f"non-JSON answer: {('<html>' + 'x' * 114 + '…')!r}"
    )


def test_undecodable_bytes_in_an_error_answer_are_replaced() -> None:
    """An answer that is not UTF-8 still gives a typed error (with replacement marks)."""
    error = token_error(500, b"\xff\xfe oops", grant="refresh_token")
    assert isinstance(error, TokenEndpointError)
    assert "\ufffd" in (error.body or "")


def test_a_broken_answer_that_echoes_the_refresh_token_salvages_nothing() -> None:
    """Only a NEW refresh token (a non-empty string) in a broken answer is salvaged."""
    previous = AuthData(access_token="AT", refresh_token="RT-old", last_refresh=NOW)
    for echoed in ("RT-old", 123, ""):
        with pytest.raises(TokenError) as caught:
            parse(200, {"refresh_token": echoed}, grant="refresh_token", previous=previous)
        assert caught.value.salvage is None, echoed


def test_a_non_object_answer_is_quoted_up_to_80_characters() -> None:
    """A 200 answer that is JSON but not an object is quoted, cut at 80 characters."""
    body = json.dumps(["y" * 100]).encode()
    with pytest.raises(TokenError) as caught:
        parse(200, body)
    quoted = '["' + "y" * 78 + "…"
    assert str(caught.value) == (
        f"the token endpoint's authorization_code answer is not a JSON object: {quoted!r}"
    )


def test_small_defaults_a_login_and_an_error_start_from() -> None:
    """A fresh login has no API key; an error built without a URL names none; a secret in
    a non-JSON error page is redacted from the message."""
    assert parse(200, {"access_token": "AT"}).api_key is None
    error = token_error(500, b"{}", grant="refresh_token")
    assert isinstance(error, TokenEndpointError)
    assert error.url == ""
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(502, b"x", provider=GENERIC, now=NOW, grant="refresh_token")
    assert caught.value.url == ""
    page = token_error(502, b"<p>RTsecret123</p>", grant="refresh_token", secrets=["RTsecret123"])
    assert "RTsecret123" not in str(page)
    assert "[redacted]" in str(page)
