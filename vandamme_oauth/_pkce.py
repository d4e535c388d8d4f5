"""PKCE (RFC 7636) and the ``state`` value: one-time secrets made with `secrets`.

The verifier is 64 random octets in base64url without padding (86 characters, 512 bits of
entropy), the same as the Codex CLI; RFC 7636 section 4.1 asks for 43 to 128 characters and
section 7.1 for at least 256 bits. Only S256 is offered: we never downgrade to ``plain``
(section 7.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from ._exceptions import ValidationError

__all__ = ["PkcePair", "new_pkce", "new_state", "s256_challenge"]

_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256_challenge(verifier: str) -> str:
    """Return the S256 code challenge of ``verifier``: BASE64URL(SHA256(ASCII(verifier))).

    Raises:
        ValidationError: ``verifier`` is not 43 to 128 unreserved characters (RFC 7636 4.1).
    """
    if not _VERIFIER_RE.match(verifier):
        raise ValidationError(
            "a PKCE code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~"
        )
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class PkcePair:
    """A PKCE verifier and its S256 challenge, for one authorization attempt only."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"


def new_pkce(nbytes: int = 64) -> PkcePair:
    """Make a fresh PKCE pair from ``nbytes`` random octets (32 to 96; default 64).

    Raises:
        ValidationError: ``nbytes`` would give a verifier outside RFC 7636's bounds.
    """
    if not 32 <= nbytes <= 96:
        raise ValidationError("PKCE verifiers need 32 to 96 random octets (43-128 characters)")
    verifier = _b64url(secrets.token_bytes(nbytes))
    return PkcePair(verifier=verifier, challenge=s256_challenge(verifier))


def new_state(nbytes: int = 32) -> str:
    """Return a high-entropy, single-use ``state`` value (RFC 8252 section 8.9)."""
    return _b64url(secrets.token_bytes(nbytes))
