"""The OAuth protocol core, sans I/O: pure functions over plain values.

- Authorization request (RFC 6749 4.1.1, RFC 7636 4.3): `build_authorization_url()`.
- Authorization response (RFC 6749 4.1.2, RFC 9207 2.4): `parse_callback()`, which
  checks ``state`` first (constant time), then ``error``, then ``iss``, then ``code``.
- Token requests (RFC 6749 4.1.3 and 6, RFC 7009 2.1): `code_exchange_request()`,
  `refresh_request()`, `revoke_request()`.
- Token responses live in `_token_response`.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from ._exceptions import (
    AuthorizationError,
    IssuerMismatchError,
    StateMismatchError,
)
from ._redact import SECRET_FIELDS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._pkce import PkcePair
    from ._provider import ProviderConfig

__all__ = [
    "TokenRequest",
    "build_authorization_url",
    "code_exchange_request",
    "parse_callback",
    "parse_pasted",
    "refresh_request",
    "revoke_request",
]

Grant = Literal["authorization_code", "refresh_token", "device_code"]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A POST to build: URL, body format and ordered fields (values may be secrets)."""

    url: str
    body_format: Literal["form", "json"]
    fields: tuple[tuple[str, str], ...] = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        """The secret values this request carries (to redact them from any answer)."""
        return tuple(v for k, v in self.fields if k in SECRET_FIELDS)

    def authenticated(self, provider: ProviderConfig) -> tuple[TokenRequest, dict[str, str]]:
        """This request with the client's authentication (RFC 6749 2.3.1), and the headers to
        send with it: ``client_secret_basic`` adds an HTTP Basic header of the form-encoded
        id and secret, ``client_secret_post`` adds ``client_secret`` after ``client_id``."""
        secret, method = provider.client_secret, provider.token_endpoint_auth_method
        if not secret:  # a public client ("none": ProviderConfig keeps the two together)
            return self, {}
        if method == "client_secret_post":
            fields = (*self.fields, ("client_secret", secret))
            return TokenRequest(self.url, self.body_format, fields), {}
        pair = f"{quote(provider.client_id, safe='')}:{quote(secret, safe='')}"
        basic = base64.b64encode(pair.encode()).decode("ascii")
        return self, {"Authorization": f"Basic {basic}"}

    def content(self) -> tuple[bytes, str]:
        """The encoded body and its Content-Type."""
        if self.body_format == "json":
            return json.dumps(dict(self.fields)).encode(), "application/json"
        body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.fields)
        return body.encode("ascii"), "application/x-www-form-urlencoded"


def _query(pairs: list[tuple[str, str]]) -> str:
    # Percent-encode everything but RFC 3986 unreserved characters (spaces become %20), as
    # the Codex CLI does.
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def build_authorization_url(
    provider: ProviderConfig, *, redirect_uri: str, state: str, pkce: PkcePair
) -> str:
    """The URL to open in the browser, parameters in the provider's order."""
    pairs = [
        ("response_type", "code"),
        ("client_id", provider.client_id),
        ("redirect_uri", redirect_uri),
        *scope_field(provider),
        ("code_challenge", pkce.challenge),
        ("code_challenge_method", pkce.method),
        *resource_field(provider),
        *provider.authorize_params,
        ("state", state),
    ]
    if provider.response_mode is not None:
        pairs.append(("response_mode", provider.response_mode))
    pairs.extend(provider.authorize_params_after_state)
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    return f"{provider.authorization_endpoint}{separator}{_query(pairs)}"


def scope_field(provider: ProviderConfig) -> tuple[tuple[str, str], ...]:
    """``scope``, unless the login asks for none (then the server's default applies)."""
    return (("scope", " ".join(provider.scopes)),) if provider.scopes else ()


def resource_field(provider: ProviderConfig) -> tuple[tuple[str, str], ...]:
    """RFC 8707's ``resource``, for a login bound to a protected resource."""
    return (("resource", provider.resource),) if provider.resource else ()


def parse_callback(
    params: Mapping[str, str], *, expected_state: str, issuer: str, require_iss: bool
) -> str:
    """Judge an authorization response and return its ``code``.

    Order matters: ``state`` first, so an error page of a forged request is never shown as
    ours; then ``iss`` (RFC 9207 section 2.4: error responses too, so another server's
    error is never reported as this one's); then ``error``; then ``code``.

    Raises:
        StateMismatchError: ``state`` is missing or differs (compared in constant time).
        AuthorizationError: the server answered ``error=...``, or sent no ``code``.
        IssuerMismatchError: ``iss`` names another server, or is missing but required.
    """
    state = params.get("state", "")
    if not state or not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise StateMismatchError(
            "the callback's state does not match this login (a stale tab or a forged request)"
        )
    iss = params.get("iss")
    if iss is None and require_iss:
        raise IssuerMismatchError(
            f"the callback has no 'iss' but {issuer} promises one (RFC 9207); refusing the answer"
        )
    if iss is not None and iss != issuer:
        raise IssuerMismatchError(
            f"the callback comes from issuer {iss!r}, not {issuer!r} (possible mix-up attack)"
        )
    if "error" in params:
        raise AuthorizationError(
            f"the provider refused the login: {params['error']}"
            + (f": {params['error_description']}" if params.get("error_description") else ""),
            error=params["error"],
            error_description=params.get("error_description"),
            error_uri=params.get("error_uri"),
        )
    code = params.get("code")
    if not code:
        raise AuthorizationError("the callback carries neither a code nor an error")
    return code


# What a pasted bare authorization code may look like: RFC 6749 allows any visible ASCII, but
# real codes are long URL-safe strings; a short word or a sentence typed at the prompt by
# mistake must not be sent to the token endpoint as a code.
_MIN_CODE_LENGTH = 12
_PLAUSIBLE_CODE = re.compile(rf"[A-Za-z0-9._~+/-]{{{_MIN_CODE_LENGTH},4096}}")


def parse_pasted(text: str) -> tuple[dict[str, str], bool]:
    """Read what a user pasted: the final redirect URL, its query, or the bare code.

    Returns the callback parameters and whether it was a bare code (which carries no state or
    ``iss`` to check: it came from the user's own terminal, not from a browser request).

    Raises:
        AuthorizationError: nothing usable was pasted.
    """
    text = text.strip().strip("'\"")
    if not text:
        raise AuthorizationError("nothing was pasted")
    if "://" in text or text.startswith("?") or "=" in text:
        query = urlsplit(text).query if "://" in text else text.lstrip("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not params:
            raise AuthorizationError(
                "the pasted address has no query string: copy the full address of the page "
                "your browser ended on (it contains code=... and state=...)"
            )
        return params, False
    if not _PLAUSIBLE_CODE.fullmatch(text):
        raise AuthorizationError(
            "that is neither the address your browser ended on nor a code (a code is one "
            f"word of at least {_MIN_CODE_LENGTH} letters, digits or -._~+/)"
        )
    return {"code": text}, True


def code_exchange_request(
    provider: ProviderConfig, *, code: str, redirect_uri: str, verifier: str
) -> TokenRequest:
    """The authorization-code exchange (form body, RFC 6749 4.1.3 + RFC 7636 4.5)."""
    return TokenRequest(
        provider.token_endpoint,
        "form",
        (
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", provider.client_id),
            ("code_verifier", verifier),
            *resource_field(provider),
        ),
    )


def refresh_request(provider: ProviderConfig, refresh_token: str) -> TokenRequest:
    """The refresh request (RFC 6749 section 6), in the provider's body format, no scope;
    with ``resource`` for a login bound to a resource (RFC 8707 section 2.2)."""
    if provider.refresh_body == "json":
        fields = (
            ("client_id", provider.client_id),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            *resource_field(provider),
        )
    else:
        fields = (
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", provider.client_id),
            *resource_field(provider),
        )
    return TokenRequest(provider.token_endpoint, provider.refresh_body, fields)


def revoke_request(provider: ProviderConfig, token: str, hint: str) -> TokenRequest | None:
    """The RFC 7009 revocation request, or None when the provider has no endpoint."""
    if provider.revocation_endpoint is None:
        return None
    fields = (("token", token), ("token_type_hint", hint), ("client_id", provider.client_id))
    return TokenRequest(provider.revocation_endpoint, provider.revoke_body, fields)
