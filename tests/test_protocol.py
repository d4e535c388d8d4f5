"""The sans-I/O protocol core: authorization URL, callback judging, token bodies and answers."""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from vandamme_oauth import (
    AuthorizationError,
    IssuerMismatchError,
    PkcePair,
    ProviderConfig,
    StateMismatchError,
    ValidationError,
)
from vandamme_oauth._protocol import (
    TokenRequest,
    build_authorization_url,
    code_exchange_request,
    parse_callback,
    parse_pasted,
    refresh_request,
    revoke_request,
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


def test_error_comes_after_iss_and_before_code() -> None:
    """With the right state and issuer, error= wins over a code and is reported with its
    description; an error from another issuer (or none, where one is required) is a
    mix-up, not this provider's answer (RFC 9207 section 2.4)."""
    answer = {"state": "good", "error": "access_denied", "error_description": "no thanks"}
    with pytest.raises(AuthorizationError, match="access_denied: no thanks") as caught:
        judge({**answer, "iss": "https://idp.example", "code": "C"})
    assert caught.value.error == "access_denied"
    assert caught.value.error_description == "no thanks"
    with pytest.raises(IssuerMismatchError, match="possible mix-up"):
        judge({**answer, "iss": "https://evil.example"})
    with pytest.raises(IssuerMismatchError, match="RFC 9207"):
        judge(answer, require_iss=True)


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


def test_state_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state comparison goes through hmac.compare_digest (a timing-safe comparison),
    for a match and a mismatch alike: an ordinary == would let an attacker learn the state
    byte by byte from response times."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert judge({"state": "good", "code": "C"}) == "C"
    with pytest.raises(StateMismatchError):
        judge({"state": "bad", "code": "C"})
    assert seen == [(b"good", b"good"), (b"bad", b"good")]


# -- the messages a user reads ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"state": "bad"},
            StateMismatchError,
            "the callback's state does not match this login (a stale tab or a forged request)",
        ),
        (
            {"state": "good", "error": "access_denied", "error_description": "no thanks"},
            AuthorizationError,
            "the provider refused the login: access_denied: no thanks",
        ),
        (
            {"state": "good", "error": "access_denied"},
            AuthorizationError,
            "the provider refused the login: access_denied",
        ),
        (
            {"state": "good", "code": "C", "iss": "https://evil.example"},
            IssuerMismatchError,
            "the callback comes from issuer 'https://evil.example', not 'https://idp.example' "
            "(possible mix-up attack)",
        ),
        (
            {"state": "good"},
            AuthorizationError,
            "the callback carries neither a code nor an error",
        ),
    ],
)
def test_callback_errors_say_what_happened(
    params: dict[str, str], error: type[Exception], message: str
) -> None:
    """Each refusal carries the exact, actionable message a user sees."""
    with pytest.raises(error) as caught:
        judge(params)
    assert str(caught.value) == message


def test_callback_error_fields_are_kept() -> None:
    """error, error_description and error_uri travel on the exception (RFC 6749 4.1.2.1)."""
    with pytest.raises(AuthorizationError) as caught:
        judge(
            {
                "state": "good",
                "error": "access_denied",
                "error_description": "d",
                "error_uri": "https://idp.example/e",
            }
        )
    assert (caught.value.error, caught.value.error_description, caught.value.error_uri) == (
        "access_denied",
        "d",
        "https://idp.example/e",
    )


def test_missing_iss_when_required_names_the_issuer() -> None:
    """A provider that promises iss (RFC 9207) gets its callbacks without one refused."""
    with pytest.raises(IssuerMismatchError) as caught:
        judge({"state": "good", "code": "C"}, require_iss=True)
    assert str(caught.value) == (
        "the callback has no 'iss' but https://idp.example promises one (RFC 9207); "
        "refusing the answer"
    )


@pytest.mark.parametrize(
    ("text", "params", "bare"),
    [
        (
            "http://127.0.0.1:1455/auth/callback?code=C&state=S",
            {"code": "C", "state": "S"},
            False,
        ),
        (
            "  'http://localhost/cb?code=C&state=S&x='  ",
            {"code": "C", "state": "S", "x": ""},
            False,
        ),
        ("?code=C&state=S", {"code": "C", "state": "S"}, False),
        ("code=C&state=S", {"code": "C", "state": "S"}, False),
        ('"abc-DEF_1234"', {"code": "abc-DEF_1234"}, True),
        ("a.b~c+d/e-f_", {"code": "a.b~c+d/e-f_"}, True),  # 12: the shortest accepted
        ("x" * 4096, {"code": "x" * 4096}, True),
    ],
)
def test_pasted_text_is_read(text: str, params: dict[str, str], bare: bool) -> None:
    """A redirect URL, its query, or a bare code (quotes and spaces around are dropped)."""
    assert parse_pasted(text) == (params, bare)


_NOT_A_CODE = (
    "that is neither the address your browser ended on nor a code (a code is one word of "
    "at least 12 letters, digits or -._~+/)"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "nothing was pasted"),
        ("  ''  ", "nothing was pasted"),
        (
            "?",
            "the pasted address has no query string: copy the full address of the page your "
            "browser ended on (it contains code=... and state=...)",
        ),
        (
            "http://127.0.0.1:1455/auth/callback",
            "the pasted address has no query string: copy the full address of the page your "
            "browser ended on (it contains code=... and state=...)",
        ),
        ("two words but long enough", _NOT_A_CODE),
        ("hello", _NOT_A_CODE),  # a short word typed at the prompt
        ("abcdefghijk", _NOT_A_CODE),  # 11 characters
        ("abc*defghijkl", _NOT_A_CODE),  # not a URL-safe character
        ("x" * 4097, _NOT_A_CODE),
    ],
)
def test_unusable_pastes_say_why(text: str, message: str) -> None:
    """Nothing usable is an AuthorizationError with the reason, and no provider error."""
    with pytest.raises(AuthorizationError) as caught:
        parse_pasted(text)
    assert str(caught.value) == message
    assert caught.value.error is None


def test_client_authentication_by_basic_or_post() -> None:
    """RFC 6749 2.3.1: Basic carries the form-encoded id and secret; post appends
    client_secret to the form; a public client sends nothing more."""
    import base64

    from vandamme_oauth._protocol import refresh_request

    secret = "s3cr:t/+ é"
    client = GENERIC.replace(client_id="app/1:x")
    basic = client.replace(client_secret=secret, token_endpoint_auth_method="client_secret_basic")
    request, headers = refresh_request(basic, "RT").authenticated(basic)
    assert request == refresh_request(client, "RT")
    encoded = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert encoded == "app%2F1%3Ax:s3cr%3At%2F%2B%20%C3%A9"
    post = client.replace(client_secret=secret, token_endpoint_auth_method="client_secret_post")
    request, headers = refresh_request(post, "RT").authenticated(post)
    assert headers == {}
    assert (request.url, request.body_format) == (post.token_endpoint, "form")
    assert request.fields[-1] == ("client_secret", secret)
    assert secret in request.secrets()
    assert refresh_request(GENERIC, "RT").authenticated(GENERIC)[1] == {}
    assert secret not in repr(post)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"client_secret": "s"}, "a client_secret goes with"),
        ({"token_endpoint_auth_method": "client_secret_post"}, "a client_secret goes with"),
        (
            {"client_secret": "s", "token_endpoint_auth_method": "private_key_jwt"},
            "is not one of none, client_secret_basic, client_secret_post",
        ),
    ],
)
def test_client_secret_and_method_go_together(changes: dict[str, str], message: str) -> None:
    """A secret without a method to send it (or the reverse) is a configuration error."""
    with pytest.raises(ValidationError, match=message):
        GENERIC.replace(**changes)


def test_an_authorization_endpoint_with_a_query_gets_the_rest_after_an_ampersand() -> None:
    """Parameters already in the endpoint (a tenant, say) are kept; ours follow with '&'."""
    provider = GENERIC.replace(authorization_endpoint="https://idp.example/authorize?tenant=t")
    url = build_authorization_url(
        provider, redirect_uri="http://127.0.0.1:1/cb", state="S", pkce=PKCE
    )
    assert url.startswith("https://idp.example/authorize?tenant=t&response_type=code&")


def test_every_key_and_value_is_percent_encoded() -> None:
    """Only RFC 3986 unreserved characters stay as they are, in keys and values alike, in
    the authorization URL and in form bodies."""
    provider = GENERIC.replace(authorize_params=(("a/b", "c/d e"),))
    url = build_authorization_url(
        provider, redirect_uri="http://127.0.0.1:1/cb", state="S", pkce=PKCE
    )
    assert "&a%2Fb=c%2Fd%20e&" in url
    request = TokenRequest("https://idp.example/token", "form", (("k/1", "v/1 +"),))
    assert request.content() == (b"k%2F1=v%2F1%20%2B", "application/x-www-form-urlencoded")


def test_requests_go_to_the_right_endpoint_in_the_right_format() -> None:
    """The code exchange is a form POST to the token endpoint; revocation goes to the
    revocation endpoint in the provider's body format."""
    exchange = code_exchange_request(CHATGPT, code="c", redirect_uri="r", verifier="v")
    assert (exchange.url, exchange.body_format) == (CHATGPT.token_endpoint, "form")
    revoke = revoke_request(CHATGPT, "RT", "refresh_token")
    assert revoke is not None
    assert (revoke.url, revoke.body_format) == (CHATGPT.revocation_endpoint, "json")


def test_a_callback_without_state_is_not_ours() -> None:
    """No state at all is a mismatch (still waiting), not a crash."""
    with pytest.raises(StateMismatchError):
        parse_callback({"code": "C"}, expected_state="S", issuer=GENERIC.issuer, require_iss=False)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("'XcodeX12345678X'", {"code": "XcodeX12345678X"}),  # quotes go, the code stays
        ("?X=1&code=C&state=S", {"X": "1", "code": "C", "state": "S"}),
    ],
)
def test_pasted_text_loses_only_quotes_and_the_leading_question_mark(
    text: str, params: dict[str, str]
) -> None:
    """Stripping removes the quotes and the '?', nothing of the content."""
    assert parse_pasted(text)[0] == params
