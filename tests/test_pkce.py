"""PKCE and state (RFC 7636): shapes, entropy sources and the S256 transform."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vandamme_oauth import PkcePair, ValidationError, new_pkce, new_state
from vandamme_oauth._pkce import s256_challenge

UNRESERVED = re.compile(r"^[A-Za-z0-9\-._~]+$")


def test_rfc7636_appendix_b_example() -> None:
    """The S256 challenge of RFC 7636's worked example (Appendix B) matches the RFC."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_pkce_default_matches_codex() -> None:
    """The default verifier is 64 random octets: 86 base64url characters, S256 only."""
    pair = new_pkce()
    assert len(pair.verifier) == 86
    assert UNRESERVED.match(pair.verifier)
    assert pair.method == "S256"
    assert pair.challenge == s256_challenge(pair.verifier)
    assert pair.verifier not in repr(pair)


def test_pairs_and_states_are_unique() -> None:
    """Every attempt gets its own verifier and state."""
    assert len({new_pkce().verifier for _ in range(50)}) == 50
    assert len({new_state() for _ in range(50)}) == 50
    assert len(new_state()) == 43


@given(st.integers(min_value=32, max_value=96))
def test_verifier_length_stays_within_rfc_bounds(nbytes: int) -> None:
    """Any allowed size gives a 43-128 character verifier of unreserved characters."""
    pair = new_pkce(nbytes)
    assert 43 <= len(pair.verifier) <= 128
    assert UNRESERVED.match(pair.verifier)
    digest = base64.urlsafe_b64decode(pair.challenge + "=")
    assert digest == hashlib.sha256(pair.verifier.encode()).digest()


@given(st.text(max_size=200))
def test_s256_rejects_anything_but_valid_verifiers(text: str) -> None:
    """s256_challenge accepts exactly RFC 7636 verifiers and raises ValidationError otherwise."""
    valid = 43 <= len(text) <= 128 and bool(UNRESERVED.match(text))
    if valid:
        assert len(s256_challenge(text)) == 43
    else:
        with pytest.raises(ValidationError):
            s256_challenge(text)


@pytest.mark.parametrize("nbytes", [16, 31, 97])
def test_new_pkce_refuses_weak_or_oversized(nbytes: int) -> None:
    """Too few octets (under 256 bits) or too many (over 128 chars) are refused."""
    with pytest.raises(ValidationError):
        new_pkce(nbytes)


def test_pkce_pair_is_frozen() -> None:
    """PkcePair is immutable."""
    pair = new_pkce()
    with pytest.raises(AttributeError):
        pair.verifier = "x"  # type: ignore[misc]
    assert isinstance(pair, PkcePair)
