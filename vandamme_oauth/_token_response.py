"""Token-endpoint answers, sans I/O (RFC 6749 5.1 / 5.2).

`parse_token_response()` turns an answer into [`AuthData`][vandamme_oauth.AuthData] (merging a
refresh into the login it refreshed); `token_error()` classifies a refusal as permanent (the refresh
token is dead: [`ReauthenticationRequired`][vandamme_oauth.ReauthenticationRequired]) or not; the
provider's dialect may add error codes that mean "log in again".
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import (
    InvalidJWTError,
    ReauthenticationRequired,
    TokenEndpointError,
    TokenError,
)
from ._jwt_claims import claim_at, decode_claims, looks_like_jwt
from ._login import CLAIMS, AuthData
from ._redact import redact_body
from ._times import MAX_LIFETIME, check_instant, check_lifetime

if TYPE_CHECKING:
    from ._provider import ProviderConfig

__all__ = [
    "PERMANENT_REFRESH_ERRORS",
    "Grant",
    "error_code",
    "parse_token_response",
    "token_error",
]

#: Refresh error codes that mean the refresh token is dead for every provider (RFC 6749 5.2);
#: a dialect adds its own (``Dialect.permanent_refresh_errors``).
PERMANENT_REFRESH_ERRORS = frozenset({"invalid_grant"})

Grant = Literal["authorization_code", "refresh_token", "device_code"]


def error_code(body: object) -> str | None:
    """The error code of an error body: ``error.code``, a string ``error``, or ``code``."""
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        return code if isinstance(code, str) else None
    if isinstance(error, str):
        return error
    code = body.get("code")
    return code if isinstance(code, str) else None


def _error_description(body: object, secrets: Sequence[str]) -> str | None:
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    text = error.get("message") if isinstance(error, Mapping) else body.get("error_description")
    return redact_body(text, limit=200, secrets=secrets) if isinstance(text, str) else None


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None


def token_error(
    status: int,
    body: bytes,
    *,
    grant: Grant,
    url: str = "",
    retry_after: float | None = None,
    secrets: Sequence[str] = (),
    permanent: frozenset[str] = frozenset(),
) -> TokenError:
    """Classify a non-200 token-endpoint answer.

    A refresh refused with HTTP 401, ``invalid_grant`` or one of the dialect's ``permanent``
    codes (ChatGPT's ``refresh_token_*``) is permanent:
    [`ReauthenticationRequired`][vandamme_oauth.ReauthenticationRequired]. Anything else is a
    `TokenEndpointError` whose ``transient`` says whether to try again later.
    """
    parsed = _json_or_none(body)
    code = error_code(parsed)
    description = _error_description(parsed, secrets)
    text = body.decode("utf-8", "replace")
    dead = status == 401 or code in PERMANENT_REFRESH_ERRORS or code in permanent
    if grant == "refresh_token" and dead:
        return ReauthenticationRequired(
            f"the provider rejected the refresh token ({code or f'HTTP {status}'}); log in again",
            status_code=status,
            error=code,
            error_description=description,
        )
    if parsed is None:
        detail = f"a non-JSON answer: {redact_body(text, limit=120, secrets=secrets)!r}"
    else:
        detail = f"{code or 'no error code'}" + (f": {description}" if description else "")
    return TokenEndpointError(
        f"the token endpoint answered HTTP {status} to the {grant} request with {detail}",
        status_code=status,
        url=url,
        body=redact_body(text, secrets=secrets),
        retry_after=retry_after,
        error=code,
        error_description=description,
    )


def _typed_claims(provider: ProviderConfig, id_token: str | None) -> dict[str, str]:
    """The login's typed claims (plan, user, organization, project) from the ID token, by
    the provider's ``claim_paths``; the first path found for a name wins."""
    if not provider.claim_paths or id_token is None:
        return {}
    claims = decode_claims(id_token)  # readable: _identity() has checked it
    found: dict[str, str] = {}
    for name, path in provider.claim_paths:
        value = claim_at(claims, path)
        if name in CLAIMS and name not in found and isinstance(value, str) and value:
            found[name] = value
    return found


def _identity(
    provider: ProviderConfig, id_token: str | None, access_token: str
) -> tuple[str | None, str | None]:
    """Account id and email from the ID token's claims, then the access token's."""
    sources: list[dict[str, Any]] = []
    if id_token is not None:
        try:
            sources.append(decode_claims(id_token))
        except InvalidJWTError as exc:
            raise TokenError(
                f"the token endpoint returned an unreadable id_token ({exc.message})"
            ) from None
    if looks_like_jwt(access_token):
        # Access tokens may be opaque or not JSON: then there is nothing to learn from them.
        with contextlib.suppress(InvalidJWTError):
            sources.append(decode_claims(access_token))
    account_id = email = None
    for claims in sources:
        if account_id is None:
            value = claim_at(claims, provider.account_id_claim)
            account_id = value if isinstance(value, str) and value else None
        for path in provider.email_claims:
            value = claim_at(claims, path)
            if email is None and isinstance(value, str) and value:
                email = value
    return account_id, email


def _expires_at(
    payload: Mapping[str, Any], access_token: str, now: float, grant: Grant
) -> float | None:
    """When the access token expires: ``expires_in`` (checked and clamped, see
    `_times`), else the access token's own ``exp`` when it is a usable instant."""
    if payload.get("expires_in") is not None:
        lifetime = check_lifetime(payload["expires_in"])
        if isinstance(lifetime, str):
            raise TokenError(
                f"the token endpoint's {grant} answer has an expires_in that {lifetime}"
            )
        return now + lifetime
    if looks_like_jwt(access_token):
        try:
            exp = decode_claims(access_token).get("exp")
        except InvalidJWTError:
            return None
        instant = check_instant(exp)
        return None if instant is None else min(instant, now + MAX_LIFETIME)
    return None


def _salvage(payload: object, previous: AuthData | None) -> AuthData | None:
    """From an unusable refresh answer, the previous login with the new refresh token in it,
    or None when the answer carries no new refresh token."""
    if previous is None or not isinstance(payload, Mapping):
        return None
    new = payload.get("refresh_token")
    if not isinstance(new, str) or not new or new == previous.refresh_token:
        return None
    return previous.replace(refresh_token=new)


def parse_token_response(
    status: int,
    body: bytes,
    *,
    provider: ProviderConfig,
    now: float,
    grant: Grant,
    previous: AuthData | None = None,
    url: str = "",
    retry_after: float | None = None,
    secrets: Sequence[str] = (),
) -> AuthData:
    """Turn a token-endpoint answer into [`AuthData`][vandamme_oauth.AuthData].

    For a refresh, pass the freshly read ``previous`` login: every response field is optional
    and missing ones are kept from it (above all the refresh token, RFC 6749 section 6).
    ``secrets`` are the values the request carried: echoed back, they are redacted.

    Raises:
        ReauthenticationRequired: a refresh refused for good.
        TokenEndpointError: any other error status.
        TokenError: a 200 answer that is not a JSON object with a usable access token and,
            if given, a positive ``expires_in``. For a refresh whose answer carried a new
            refresh token, ``salvage`` holds ``previous`` with that token in it.
    """
    if status != 200:
        raise token_error(
            status,
            body,
            grant=grant,
            url=url,
            retry_after=retry_after,
            secrets=secrets,
            permanent=provider.dialect.permanent_refresh_errors,
        )
    payload = _json_or_none(body)
    try:
        return _parse_success(
            payload,
            body,
            provider=provider,
            now=now,
            grant=grant,
            previous=previous,
            secrets=secrets,
        )
    except TokenError as exc:
        # A refresh answer we cannot use may still carry the rotated refresh token: the old
        # one is spent now, so hand the new one up to be stored rather than lose the login.
        exc.salvage = _salvage(payload, previous)
        raise


def _parse_success(
    payload: object,
    body: bytes,
    *,
    provider: ProviderConfig,
    now: float,
    grant: Grant,
    previous: AuthData | None,
    secrets: Sequence[str],
) -> AuthData:
    if not isinstance(payload, Mapping):
        raise TokenError(
            f"the token endpoint's {grant} answer is not a JSON object: "
            f"{redact_body(body.decode('utf-8', 'replace'), limit=80, secrets=secrets)!r}"
        )
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError(f"the token endpoint's {grant} answer has no access_token")
    token_type = payload.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() not in {"bearer", "dpop"}:
        raise TokenError(f"unsupported token_type {token_type!r} in the {grant} answer")

    def optional(key: str) -> str | None:
        value = payload.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise TokenError(f"the {grant} answer's {key} is not a string")
        return value

    refresh_token = optional("refresh_token")
    id_token = optional("id_token")
    scope = optional("scope")
    # Only what this answer brings is read: the previous login's identity is already known.
    account_id, email = _identity(provider, id_token, access_token)
    claims: dict[str, str | None] = dict(_typed_claims(provider, id_token))
    api_key = None
    if previous is not None:
        # Every field of a refresh answer is optional: what it lacks is kept.
        refresh_token = refresh_token or previous.refresh_token
        id_token = id_token or previous.id_token
        scope = scope or previous.scope
        account_id = account_id or previous.account_id
        email = email or previous.email
        api_key = previous.api_key
        claims = {name: claims.get(name) or getattr(previous, name) for name in CLAIMS}
    return AuthData(
        access_token=access_token,
        refresh_token=refresh_token,
        id_token=id_token,
        account_id=account_id,
        email=email,
        expires_at=_expires_at(payload, access_token, now, grant),
        last_refresh=now,
        token_type="Bearer" if token_type.lower() == "bearer" else token_type,
        scope=scope,
        api_key=api_key,
        **{name: value for name, value in claims.items() if value},
    )
