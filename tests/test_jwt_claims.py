"""Reading JWT claims without verification: good tokens, and every malformed shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vandamme_oauth import InvalidJWTError, decode_claims
from vandamme_oauth._jwt_claims import claim_at


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT carrying ``claims`` (tests only read claims)."""

    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_round_trip(claims: dict[str, Any]) -> None:
    """Whatever JSON object is encoded comes back unchanged."""
    assert decode_claims(make_jwt(claims)) == claims


@given(st.text(max_size=100))
def test_arbitrary_text_never_crashes(text: str) -> None:
    """Any input either decodes to a dict or raises InvalidJWTError, nothing else."""
    try:
        claims = decode_claims(text)
    except InvalidJWTError:
        return
    assert isinstance(claims, dict)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("opaque-token", "three dot-separated parts"),
        ("a..c", "three dot-separated parts"),
        ("a.!!!!.c", "not base64url-encoded JSON"),
        (
            "a." + base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=") + ".c",
            "not a JSON object",
        ),
        ("a." + base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=") + ".c", "not base64url"),
    ],
)
def test_malformed_tokens_raise_a_clear_error(token: str, message: str) -> None:
    """Malformed tokens raise InvalidJWTError saying what is wrong, without echoing the token."""
    with pytest.raises(InvalidJWTError, match=message) as caught:
        decode_claims(token)
    assert token not in str(caught.value)


def test_claim_at_follows_namespaced_paths() -> None:
    """Nested namespace claims (ChatGPT's auth claim) are reachable; missing steps give None."""
    claims = {"https://api.openai.com/auth": {"chatgpt_account_id": "acct-1"}, "sub": "u"}
    assert claim_at(claims, ("https://api.openai.com/auth", "chatgpt_account_id")) == "acct-1"
    assert claim_at(claims, ("sub",)) == "u"
    assert claim_at(claims, ("sub", "deeper")) is None
    assert claim_at(claims, ("missing",)) is None
