"""Device login for machines without a usable browser: RFC 8628 and ChatGPT's variant.

RFC 8628: POST the device authorization request, show ``verification_uri`` and ``user_code``
(and ``verification_uri_complete``), then poll the token endpoint with the device_code grant:
at the server's ``interval`` (5 s when absent, section 3.2) plus a safety margin (clock drift
made gh's and crush's pollers trip ``slow_down`` loops); ``slow_down`` adds 5 s to this and
every later interval (section 3.5); ``access_denied`` and ``expired_token`` end the login;
network errors back off exponentially.

ChatGPT (see CHATGPT.md): JSON ``{"client_id"}`` to ``/api/accounts/deviceauth/usercode``
gives ``device_auth_id``, ``user_code`` and a string ``interval``; the user enters the code at
``{issuer}/codex/device``; polling ``/api/accounts/deviceauth/token`` answers 403/404 while
pending, then an authorization code and its PKCE verifier, exchanged as usual with the
``{issuer}/deviceauth/callback`` redirect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._closing import AsyncClosing
from ._exceptions import (
    AuthorizationError,
    CallbackTimeoutError,
    NetworkError,
    OAuthFlowError,
    TokenEndpointError,
    ValidationError,
)
from ._http_client import RetryPolicy
from ._protocol import TokenRequest
from ._token_client import TokenClient
from ._token_response import error_code, parse_token_response, token_error
from .storage._base import store_login

if TYPE_CHECKING:
    import httpx

    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["DeviceCode", "DeviceFlow", "parse_device_authorization"]

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0
SLOW_DOWN_STEP = 5.0


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """What the user needs to see, and what we poll with (the device code stays hidden)."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: str = field(repr=False)


def _number(value: object, default: float) -> float:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return default


def parse_device_authorization(status: int, body: bytes, *, provider: ProviderConfig) -> DeviceCode:
    """Parse the device authorization answer (RFC 8628 3.2, or ChatGPT's usercode answer).

    Raises:
        AuthorizationError: the server refused (404 from ChatGPT: device login not enabled).
        ValidationError: the answer lacks the fields a device login needs.
    """
    chatgpt = provider.device_variant == "chatgpt"
    if status == 404 and chatgpt:
        raise AuthorizationError(
            "device login is not enabled for this ChatGPT account: enable it in ChatGPT's "
            "security settings, or use paste-back (vandamme-oauth login --paste)"
        )
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if status != 200:
        raise AuthorizationError(
            f"the device authorization request was refused (HTTP {status}, "
            f"{error_code(payload) or 'no error code'})",
            error=error_code(payload),
        )
    if not isinstance(payload, Mapping):
        raise ValidationError("the device authorization answer is not a JSON object")
    if chatgpt:
        device_code = payload.get("device_auth_id")
        user_code = payload.get("user_code") or payload.get("usercode")
        uri: object = f"{provider.issuer}/codex/device"
        complete = None
        expires_in = 15 * 60.0
    else:
        device_code = payload.get("device_code")
        user_code = payload.get("user_code")
        uri = payload.get("verification_uri") or payload.get("verification_url")
        complete = payload.get("verification_uri_complete")
        expires_in = _number(payload.get("expires_in"), 600.0)
    if not (
        isinstance(device_code, str)
        and isinstance(user_code, str)
        and isinstance(uri, str)
        and device_code
        and user_code
        and uri
    ):
        raise ValidationError("the device authorization answer lacks a code or a URI")
    return DeviceCode(
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=complete if isinstance(complete, str) else None,
        expires_in=expires_in,
        interval=max(_number(payload.get("interval"), DEFAULT_INTERVAL), 0.0),
        device_code=device_code,
    )


def _chatgpt_endpoint(provider: ProviderConfig, path: str) -> str:
    return f"{provider.issuer}/api/accounts/deviceauth/{path}"


class DeviceFlow(AsyncClosing):
    """Log in with a code typed on another device.

    Args:
        provider: Needs ``device_authorization_endpoint`` (RFC 8628) or the ChatGPT preset.
        storage: Where the tokens go.
        on_code: Called once with the `DeviceCode` to show the user.
        http_client: An AsyncClient (not closed by us).
        clock: Monotonic clock for the code's expiry.
        sleep: How to wait between polls (injectable for tests).
        safety_margin: Fraction added to every polling interval (default 20 %).
    """

    def __init__(
        self,
        provider: ProviderConfig,
        storage: AuthStorage,
        *,
        on_code: Callable[[DeviceCode], object] | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        safety_margin: float = 0.2,
    ) -> None:
        if provider.device_variant == "rfc8628" and not provider.device_authorization_endpoint:
            raise ValidationError(
                f"{provider.issuer} offers no device login (no device_authorization_endpoint)"
            )
        self.provider = provider
        self.storage = storage
        self._on_code = on_code
        # Polls are never retried by the client once sent; the loop below does the backoff.
        self._tokens = TokenClient(provider, http_client=http_client, retry=RetryPolicy(attempts=1))
        self._clock = clock
        self._sleep = sleep
        self._margin = safety_margin

    async def aclose(self) -> None:
        """Close the HTTP client if we created it."""
        await self._tokens.aclose()

    async def request_code(self) -> DeviceCode:
        """Start the device login: ask the server for a user code."""
        if self.provider.device_variant == "chatgpt":
            request = TokenRequest(
                _chatgpt_endpoint(self.provider, "usercode"),
                "json",
                (("client_id", self.provider.client_id),),
            )
        else:
            request = TokenRequest(
                self.provider.device_authorization_endpoint or "",
                "form",
                (("client_id", self.provider.client_id), ("scope", " ".join(self.provider.scopes))),
            )
        response = await self._tokens.post(request, idempotent=False)
        return parse_device_authorization(
            response.status_code, response.content, provider=self.provider
        )

    async def authenticate(self, *, timeout: float | None = None) -> AuthData:
        """Show the code, poll until the user approves, store and return the tokens.

        Raises:
            AuthorizationError: the user denied the request (``access_denied``).
            CallbackTimeoutError: the code expired (or ``timeout`` passed) first.
            TokenEndpointError, NetworkError, StorageError: as for the browser login.
        """
        code = await self.request_code()
        log.info("device code issued", extra={"verification_uri": code.verification_uri})
        if self._on_code is not None:
            self._on_code(code)
        deadline = self._clock() + min(code.expires_in, timeout or code.expires_in)
        interval = code.interval
        network_failures = 0
        while True:
            wait = interval * (1 + self._margin) * (2**network_failures)
            if self._clock() + wait > deadline:
                raise CallbackTimeoutError(
                    "the device code expired before the sign-in was approved; start again"
                )
            await self._sleep(min(wait, 60.0) if network_failures else wait)
            try:
                auth = await self._poll(code)
            except NetworkError as exc:
                network_failures = min(network_failures + 1, 4)
                log.warning("device poll failed (%s); backing off", exc)
                continue
            network_failures = 0
            if isinstance(auth, str):
                if auth == "slow_down":
                    interval += SLOW_DOWN_STEP
                    log.info("server asked to slow down", extra={"interval_s": interval})
                continue
            await store_login(self.storage, auth, self.provider.to_dict())
            log.info("device login stored", extra={"account_id": auth.account_id})
            return auth

    async def _poll(self, code: DeviceCode) -> AuthData | str:
        if self.provider.device_variant == "chatgpt":
            return await self._poll_chatgpt(code)
        request = TokenRequest(
            self.provider.token_endpoint,
            "form",
            (
                ("grant_type", DEVICE_GRANT),
                ("device_code", code.device_code),
                ("client_id", self.provider.client_id),
            ),
        )
        response = await self._tokens.post(request, idempotent=False)
        if response.status_code == 200:
            return parse_token_response(
                200, response.content, provider=self.provider, now=time.time(), grant="device_code"
            )
        try:
            error = error_code(json.loads(response.content))
        except ValueError:
            error = None
        if error in ("authorization_pending", "slow_down"):
            return "pending" if error == "authorization_pending" else "slow_down"
        if error == "access_denied":
            raise AuthorizationError("the sign-in was denied on the other device", error=error)
        if error == "expired_token":
            raise CallbackTimeoutError("the device code expired; start the login again")
        raise token_error(response.status_code, response.content, grant="device_code")

    async def _poll_chatgpt(self, code: DeviceCode) -> AuthData | str:
        request = TokenRequest(
            _chatgpt_endpoint(self.provider, "token"),
            "json",
            (("device_auth_id", code.device_code), ("user_code", code.user_code)),
        )
        response = await self._tokens.post(request, idempotent=False)
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
        return await self._tokens.exchange_code(
            code=auth_code,
            redirect_uri=f"{self.provider.issuer}/deviceauth/callback",
            verifier=verifier,
        )
