"""The ChatGPT dialect, in one place: everything that speaks "Sign in with ChatGPT".

The facts come from the Codex CLI (see ``CHATGPT.md`` in the design notes): the preset (the
Codex CLI's public client, byte for byte), the claim paths of the ID token, the refresh
error codes that mean "log in again", the device-code variant, the headers ChatGPT's backend
expects, the usage-limit answer (429) and the optional API-key exchange. Nothing else in the
package branches on ChatGPT: the rest is generic OAuth driven by the plain data of a
[`ProviderConfig`][vandamme_oauth.ProviderConfig].
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .._dialect import Dialect
from .._exceptions import (
    AuthorizationError,
    OAuthFlowError,
    TokenEndpointError,
    TokenError,
    ValidationError,
)
from .._jwt_claims import claim_at, decode_claims, looks_like_jwt
from .._protocol import TokenRequest
from .._provider import ProviderConfig
from .._redact import redact_body
from .._times import check_instant

if TYPE_CHECKING:
    from .._device_codes import DeviceCode
    from .._login import AuthData
    from .._token_client import TokenClient

log = logging.getLogger(__name__)

__all__ = [
    "AUTH_CLAIM",
    "CLIENT_ID",
    "DEVICE",
    "DIALECT",
    "ISSUER",
    "REFRESH_TOKEN_DEAD",
    "SCOPES",
    "ChatGPTDevice",
    "ChatGPTDialect",
    "UsageLimit",
    "api_key_request",
    "backend_headers",
    "exchange_api_key",
    "is_chatgpt",
    "parse_api_key",
    "preset",
    "usage_limit",
    "user_agent",
]

ISSUER = "https://auth.openai.com"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPES = (
    "openid",
    "profile",
    "email",
    "offline_access",
    "api.connectors.read",
    "api.connectors.invoke",
)
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
ACCOUNT_HEADER = "ChatGPT-Account-ID"
DEFAULT_ORIGINATOR = "codex_cli_rs"
#: Refresh error codes (besides ``invalid_grant`` and HTTP 401) that mean the refresh token
#: is dead and the user must log in again.
REFRESH_TOKEN_DEAD = frozenset(
    {"refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated"}
)
#: The typed claims of a ChatGPT login (first path found wins).
CLAIM_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("plan_type", (AUTH_CLAIM, "chatgpt_plan_type")),
    ("user_id", (AUTH_CLAIM, "chatgpt_user_id")),
    ("user_id", (AUTH_CLAIM, "user_id")),
    ("organization_id", (AUTH_CLAIM, "organization_id")),
    ("project_id", (AUTH_CLAIM, "project_id")),
)
ACCOUNT_ID_CLAIM = (AUTH_CLAIM, "chatgpt_account_id")
EMAIL_CLAIMS = (("email",), (PROFILE_CLAIM, "email"))
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN
_EIGHT_DAYS = 8 * 24 * 3600.0
_DEVICE_CODE_LIFETIME = 15 * 60.0


def preset(
    *,
    originator: str = DEFAULT_ORIGINATOR,
    allowed_workspace_ids: Iterable[str] = (),
    scopes: Iterable[str] = SCOPES,
    name: str = "chatgpt",
) -> ProviderConfig:
    """The "Sign in with ChatGPT" provider: the Codex CLI's public client, byte for byte.

    Args:
        originator: The ``originator`` authorization parameter.
        allowed_workspace_ids: Restrict the login to these workspaces (comma-joined).
        scopes: Scopes; older clients send ``openid profile email offline_access``.
        name: The login's name in storage.
    """
    after_state = [("originator", originator)]
    workspaces = ",".join(allowed_workspace_ids)
    if workspaces:
        after_state.append(("allowed_workspace_id", workspaces))
    return ProviderConfig(
        name=name,
        issuer=ISSUER,
        client_id=CLIENT_ID,
        authorization_endpoint=f"{ISSUER}/oauth/authorize",
        token_endpoint=f"{ISSUER}/oauth/token",
        revocation_endpoint=f"{ISSUER}/oauth/revoke",
        scopes=tuple(scopes),
        redirect_host="localhost",
        redirect_path="/auth/callback",
        ports=(1455, 1457),
        cancel_busy_port=True,
        authorize_params=(
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
        ),
        authorize_params_after_state=tuple(after_state),
        refresh_body="json",
        revoke_body="json",
        account_id_claim=ACCOUNT_ID_CLAIM,
        email_claims=EMAIL_CLAIMS,
        claim_paths=CLAIM_PATHS,
        fallback_lifetime=_EIGHT_DAYS,
        dialect=DIALECT,
    )


def is_chatgpt(provider: ProviderConfig) -> bool:
    """Whether ``provider`` is ChatGPT's auth server (whatever the login's name)."""
    return isinstance(provider.dialect, ChatGPTDialect) or provider.issuer == ISSUER


class ChatGPTDialect(Dialect):
    """What "Sign in with ChatGPT" says beyond plain OAuth: the ``refresh_token_*`` codes
    that mean "log in again", its device-code variant, the backend's headers, the
    ``vandamme-oauth login chatgpt`` command and the preset."""

    name: ClassVar[str] = "chatgpt"
    permanent_refresh_errors: ClassVar[frozenset[str]] = REFRESH_TOKEN_DEAD

    def device_variant(self) -> ChatGPTDevice:
        """ChatGPT's device login (`ChatGPTDevice`)."""
        return DEVICE

    def api_headers(self, auth: AuthData) -> dict[str, str]:
        """The header set of ChatGPT's backend (`backend_headers`)."""
        return backend_headers(auth)

    def login_command(self, provider: ProviderConfig) -> str:
        """``vandamme-oauth login chatgpt`` (with ``--name`` for another login's name)."""
        if provider.client_id != CLIENT_ID:
            return super().login_command(provider)
        parts = ["vandamme-oauth", "login", "chatgpt"]
        if provider.name != "chatgpt":
            parts += ["--name", provider.name]
        return shlex.join(parts)

    def preset(self, **options: Any) -> ProviderConfig:
        """The preset (`preset()`; ``options`` are its keyword arguments)."""
        return preset(**options)


# -- the device-code variant ----------------------------------------------------------------


def _endpoint(provider: ProviderConfig, path: str) -> str:
    return f"{provider.issuer}/api/accounts/deviceauth/{path}"


def _interval(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(float(value), 0.0)
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return 5.0


@dataclass(frozen=True, slots=True)
class ChatGPTDevice:
    """ChatGPT's device login: JSON ``{"client_id"}`` to ``/api/accounts/deviceauth/usercode``
    gives ``device_auth_id``, ``user_code`` and a string ``interval``; the user types the
    code at ``{issuer}/codex/device``; polling ``/api/accounts/deviceauth/token`` answers
    403/404 while pending, then an authorization code and its PKCE verifier, exchanged as
    usual with the ``{issuer}/deviceauth/callback`` redirect."""

    def available(self, provider: ProviderConfig) -> bool:
        """Always: ChatGPT's endpoints are not advertised by discovery."""
        return True

    async def request_code(self, tokens: TokenClient) -> DeviceCode:
        """Ask for a user code (404: device login is not enabled for the account)."""
        from .._device_codes import DeviceCode

        provider = tokens.provider
        request = TokenRequest(
            _endpoint(provider, "usercode"), "json", (("client_id", provider.client_id),)
        )
        response = await tokens.post(request, idempotent=False)
        if response.status_code == 404:
            raise AuthorizationError(
                "device login is not enabled for this ChatGPT account: enable it in ChatGPT's "
                "security settings, or use paste-back (vandamme-oauth login --paste)"
            )
        if response.status_code != 200:
            raise AuthorizationError(
                f"the device code request was refused (HTTP {response.status_code})"
            )
        try:
            payload = json.loads(response.content)
        except ValueError:
            payload = None
        if not isinstance(payload, Mapping):
            raise ValidationError("the device code answer is not a JSON object")
        device_code = payload.get("device_auth_id")
        user_code = payload.get("user_code") or payload.get("usercode")
        if not (isinstance(device_code, str) and device_code):
            raise ValidationError("the device authorization answer lacks a code or a URI")
        if not (isinstance(user_code, str) and user_code):
            raise ValidationError("the device authorization answer lacks a code or a URI")
        return DeviceCode(
            user_code=user_code,
            verification_uri=f"{provider.issuer}/codex/device",
            verification_uri_complete=None,
            expires_in=_DEVICE_CODE_LIFETIME,
            interval=_interval(payload.get("interval")),
            device_code=device_code,
        )

    async def poll(self, tokens: TokenClient, code: DeviceCode) -> AuthData | str:
        """One poll: ``"pending"``, or the tokens once the user has approved."""
        provider = tokens.provider
        request = TokenRequest(
            _endpoint(provider, "token"),
            "json",
            (("device_auth_id", code.device_code), ("user_code", code.user_code)),
        )
        response = await tokens.post(request, idempotent=False)
        if response.status_code in (403, 404):
            return "pending"
        if response.status_code != 200:
            raise TokenEndpointError(
                f"the ChatGPT device poll answered HTTP {response.status_code}",
                status_code=response.status_code,
                url=request.url,
            )
        try:
            payload = json.loads(response.content)
        except ValueError:
            payload = None
        values = payload if isinstance(payload, Mapping) else {}
        auth_code, verifier = values.get("authorization_code"), values.get("code_verifier")
        if not isinstance(auth_code, str) or not isinstance(verifier, str):
            raise OAuthFlowError("the ChatGPT device poll answer has no authorization code")
        return await tokens.exchange_code(
            code=auth_code,
            redirect_uri=f"{provider.issuer}/deviceauth/callback",
            verifier=verifier,
        )


DEVICE = ChatGPTDevice()
#: The dialect, registered as the ``chatgpt`` entry point of ``vandamme_oauth.dialects``.
DIALECT = ChatGPTDialect()


# -- the backend's headers ------------------------------------------------------------------


def user_agent(originator: str = DEFAULT_ORIGINATOR, version: str | None = None) -> str:
    """The Codex CLI's ``User-Agent`` form:
    ``<originator>/<version> (<os> <os-version>; <arch>) <terminal>``."""
    import platform  # lazily, as everything only a request to ChatGPT's backend needs

    if version is None:
        from importlib.metadata import version as installed

        version = installed("vandamme-oauth")
    system = platform.system() or "unknown"
    release = platform.release() or "unknown"
    arch = platform.machine() or "unknown"
    return f"{originator}/{version} ({system} {release}; {arch}) vandamme-oauth"


def backend_headers(
    auth: AuthData,
    *,
    originator: str = DEFAULT_ORIGINATOR,
    agent: str | None = None,
    session_id: str | None = None,
) -> dict[str, str]:
    """The headers ChatGPT's backend expects from a client holding ``auth``:
    ``Authorization``, ``ChatGPT-Account-ID`` (when the login has an account), ``originator``
    and ``User-Agent`` (both configurable; ``agent`` defaults to `user_agent()`), and a
    ``session_id`` when one is given (a client's own conversation id passes through)."""
    headers = {
        "Authorization": f"Bearer {auth.access_token}",
        "originator": originator,
        "User-Agent": agent if agent is not None else user_agent(originator),
    }
    if auth.account_id:
        headers[ACCOUNT_HEADER] = auth.account_id
    if session_id:
        headers["session_id"] = session_id
    return headers


# -- usage limits ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageLimit:
    """A usage limit reported by ChatGPT's backend (HTTP 429).

    Attributes:
        resets_at: When the limit resets, seconds since the epoch, or None if not said.
        message: The backend's own words, redacted and shortened, if any.
    """

    resets_at: float | None
    message: str | None = field(default=None)

    def retry_after(self, now: float | None = None) -> int | None:
        """Whole seconds until the reset (for a ``Retry-After`` header), or None."""
        if self.resets_at is None:
            return None
        return max(0, int(self.resets_at - (time.time() if now is None else now) + 0.999))


def _retry_after_header(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + int(value)
    import email.utils  # lazily: only a usage limit needs it

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return check_instant(when.timestamp())


def usage_limit(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> UsageLimit | None:
    """Read a 429 answer of ChatGPT's backend: None for any other status. The reset time
    comes from the body (``resets_at``, or ``resets_in_seconds``; at the top level or under
    ``error``), else from ``Retry-After`` (seconds or an HTTP date)."""
    if status != 429:
        return None
    now = time.time() if now is None else now
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    places = [payload] if isinstance(payload, Mapping) else []
    if places and isinstance(payload.get("error"), Mapping):
        places.append(payload["error"])
    resets_at = message = None
    for place in places:
        if resets_at is None and (at := check_instant(place.get("resets_at"))) is not None:
            resets_at = at
        seconds = place.get("resets_in_seconds")
        if (
            resets_at is None
            and isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and 0 <= seconds < 10 * 365 * 86400
        ):
            resets_at = now + seconds
        if message is None and isinstance(place.get("message"), str):
            message = redact_body(place["message"], limit=200)
    if resets_at is None:
        lowered = {k.lower(): v for k, v in headers.items()}
        resets_at = _retry_after_header(lowered.get("retry-after"), now)
    return UsageLimit(resets_at=resets_at, message=message)


# -- the API-key exchange -------------------------------------------------------------------


def api_key_request(provider: ProviderConfig, id_token: str) -> TokenRequest:
    """The token-exchange request that turns the ID token into an OpenAI API key (form)."""
    return TokenRequest(
        provider.token_endpoint,
        "form",
        (
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("client_id", provider.client_id),
            ("requested_token", "openai-api-key"),
            ("subject_token", id_token),
            ("subject_token_type", ID_TOKEN_TYPE),
        ),
    )


async def exchange_api_key(tokens: TokenClient, data: AuthData) -> str:
    """Turn the login's ID token into an OpenAI API key (ChatGPT's token exchange,
    `api_key_request`), through ``tokens``. Sent once; the Codex CLI treats a failure as
    harmless, and so should callers.

    Raises:
        TokenError: no ID token, the server refused, or the answer carries no key.
        NetworkError: the server could not be reached.
    """
    if not data.id_token:
        raise TokenError("the login has no ID token to exchange for an API key")
    request = api_key_request(tokens.provider, data.id_token)
    response = await tokens.post(request, idempotent=False)
    secret = tokens.provider.client_secret
    hidden = (*request.secrets(), *((secret,) if secret else ()))
    key = parse_api_key(response.status_code, response.content, secrets=hidden)
    log.info("API key obtained")
    return key


def parse_api_key(status: int, body: bytes, *, secrets: Iterable[str] = ()) -> str:
    """The API key in a token-exchange answer (its ``access_token``).

    Raises:
        TokenError: the server refused, or the answer carries no key.
    """
    secrets = tuple(secrets)
    if status != 200:
        raise TokenError(
            f"the API-key exchange was refused (HTTP {status}: "
            f"{redact_body(body.decode('utf-8', 'replace'), limit=120, secrets=secrets)!r})"
        )
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    key = payload.get("access_token") if isinstance(payload, Mapping) else None
    if not isinstance(key, str) or not key:
        raise TokenError("the API-key exchange answer carries no key")
    return key


def claims_of(token: str | None) -> dict[str, Any]:
    """The claims of a JWT, or an empty dict for anything else (opaque, unreadable)."""
    if not token or not looks_like_jwt(token):
        return {}
    try:
        return decode_claims(token)
    except ValidationError:
        return {}


def plan_of(auth: AuthData) -> str | None:
    """The login's ChatGPT plan: the stored ``plan_type``, else the ID token's claim."""
    if auth.plan_type:
        return auth.plan_type
    plan = claim_at(claims_of(auth.id_token), (AUTH_CLAIM, "chatgpt_plan_type"))
    return plan if isinstance(plan, str) and plan else None
