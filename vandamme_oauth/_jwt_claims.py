"""Read JWT claims WITHOUT verifying the signature.

We only read claims of tokens that we just received over TLS from the token endpoint (or
stored ourselves) to learn an expiry, an account id or an email. Nothing here proves who
issued a token: never use these claims for an authorization decision.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import InvalidJWTError

__all__ = ["claim_at", "decode_claims", "looks_like_jwt"]


def looks_like_jwt(token: str) -> bool:
    """True when ``token`` has the three dot-separated parts of a JWS compact serialization."""
    return token.count(".") == 2


def decode_claims(token: str) -> dict[str, Any]:
    """Return the payload of a JWT as a dict. No signature check.

    Raises:
        InvalidJWTError: ``token`` is not three base64url parts with a JSON object payload.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        raise InvalidJWTError("the token is not a JWT (expected three dot-separated parts)")
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidJWTError("the JWT payload is not base64url-encoded JSON") from exc
    if not isinstance(claims, dict):
        raise InvalidJWTError("the JWT payload is not a JSON object")
    return claims


def claim_at(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    """Follow ``path`` through nested claim objects; None when any step is missing."""
    node: Any = claims
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node
