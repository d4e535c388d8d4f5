"""Keep secrets out of messages, logs and reprs.

Error bodies from token endpoints may echo tokens back; before any of their text goes into an
exception we replace the values of known secret keys and cap the length.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SECRET_FIELDS", "redact_body"]

# Request fields whose values are secrets (key names, not secrets).
SECRET_FIELDS = frozenset(
    {"refresh_token", "code", "code_verifier", "token", "subject_token", "client_secret"}
    | {"device_code", "device_auth_id", "user_code"}
)
_MIN_SECRET = 6  # shorter values are not replaced in free text (they would hit ordinary words)
# Key names, not secrets.
_SECRET_KEYS = (
    "access_token|refresh_token|id_token|code|code_verifier|token|subject_token|"  # noqa: S105
    "device_code|client_secret|api_key|password|state"
)
_JSON_SECRET = re.compile(rf'("(?:{_SECRET_KEYS})"\s*:\s*)"[^"]*"', re.IGNORECASE)
_FORM_SECRET = re.compile(rf"((?:^|[&?\s])(?:{_SECRET_KEYS})=)[^&\s]*", re.IGNORECASE)
# Anything shaped like a JWT (three base64url parts) is redacted wherever it appears.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


def redact_body(text: str, *, limit: int = 300, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with secret values replaced by ``[redacted]``, cut to ``limit`` chars.

    ``secrets``: values the library sent or holds (a refresh token, a code); a provider that
    echoes one anywhere in its text (an ``error_description`` say) has it replaced too.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "[redacted]")
    text = _JSON_SECRET.sub(r'\1"[redacted]"', text)
    text = _FORM_SECRET.sub(r"\1[redacted]", text)
    text = _JWT.sub("[redacted-jwt]", text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text
