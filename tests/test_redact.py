"""Secrets never reach a message: what `redact_body` replaces, exactly, and what it keeps."""

from __future__ import annotations

from vandamme_oauth._redact import redact_body


def test_the_longest_secret_goes_first_so_no_part_of_it_is_left() -> None:
    """A secret that contains another (a token and its suffix): replacing the short one
    first would leave the rest of the long one readable."""
    text = "token abcdefzzzzzz rejected"
    assert redact_body(text, secrets=["zzzzzz", "abcdefzzzzzz"]) == "token [redacted] rejected"
    assert redact_body(text, secrets=["abcdefzzzzzz", "zzzzzz"]) == "token [redacted] rejected"


def test_secrets_from_six_characters_are_replaced_shorter_ones_kept() -> None:
    """Six characters and more are replaced anywhere; shorter values would hit ordinary
    words, so they are left (the keyed patterns still catch them)."""
    assert redact_body("bad sixsix here", secrets=["sixsix"]) == "bad [redacted] here"
    assert redact_body("bad fiver here", secrets=["fiver"]) == "bad fiver here"


def test_keyed_values_and_jwts_are_replaced_in_place() -> None:
    jwt = "eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl"
    assert redact_body('{"access_token": "abc", "Refresh_Token":"def", "x": "ok"}') == (
        '{"access_token": "[redacted]", "Refresh_Token":"[redacted]", "x": "ok"}'
    )
    assert redact_body("refresh_token=abc&code=xyz&scope=openid") == (
        "refresh_token=[redacted]&code=[redacted]&scope=openid"
    )
    assert redact_body(f"Bearer {jwt} was refused") == "Bearer [redacted-jwt] was refused"


def test_long_bodies_are_cut_after_the_limit() -> None:
    """300 characters by default: a body of exactly 300 is whole, one more is cut and
    marked."""
    assert redact_body("a" * 300) == "a" * 300
    assert redact_body("a" * 301) == "a" * 300 + "…"
    assert redact_body("abcdef", limit=3) == "abc…"
