"""Device login for machines without a usable browser: RFC 8628, or a provider's variant.

RFC 8628: POST the device authorization request, show ``verification_uri`` and ``user_code``
(and ``verification_uri_complete``), then poll the token endpoint with the device_code grant:
at the server's ``interval`` (5 s when absent, section 3.2) plus a safety margin (clock drift
made gh's and crush's pollers trip ``slow_down`` loops); ``slow_down`` adds 5 s to this and
every later interval (section 3.5); ``access_denied`` and ``expired_token`` end the login;
network errors back off exponentially.

How the code is requested and polled is a small strategy object, a `DeviceVariant`:
`RFC8628` here, and a provider's own in its dialect module (ChatGPT's:
`vandamme_oauth.providers.chatgpt.ChatGPTDevice`). The polling loop, its margins and its
backoff are the same for every variant.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._closing import AsyncClosing
from ._exceptions import (
    AuthorizationError,
    CallbackTimeoutError,
    NetworkError,
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

__all__ = ["RFC8628", "DeviceCode", "DeviceFlow", "DeviceVariant", "parse_device_authorization"]

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


def parse_device_authorization(status: int, body: bytes) -> DeviceCode:
    """Parse an RFC 8628 device authorization answer (section 3.2).

    Raises:
        AuthorizationError: the server refused.
        ValidationError: the answer lacks the fields a device login needs.
    """
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
    device_code = payload.get("device_code")
    user_code = payload.get("user_code")
    uri = payload.get("verification_uri") or payload.get("verification_url")
    complete = payload.get("verification_uri_complete")
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
        expires_in=_number(payload.get("expires_in"), 600.0),
        interval=max(_number(payload.get("interval"), DEFAULT_INTERVAL), 0.0),
        device_code=device_code,
    )


class DeviceVariant(Protocol):
    """How a provider's device login asks for a code and polls for the tokens."""

    def available(self, provider: ProviderConfig) -> bool:
        """Whether ``provider`` offers this device login."""
        ...

    async def request_code(self, tokens: TokenClient) -> DeviceCode:
        """Ask the server for a user code (``tokens.provider`` is the provider)."""
        ...

    async def poll(self, tokens: TokenClient, code: DeviceCode) -> AuthData | str:
        """Poll once: the tokens, or ``"pending"`` / ``"slow_down"``."""
        ...


class RFC8628:
    """The standard device authorization grant (RFC 8628)."""

    def available(self, provider: ProviderConfig) -> bool:
        """Only with a ``device_authorization_endpoint``."""
        return bool(provider.device_authorization_endpoint)

    async def request_code(self, tokens: TokenClient) -> DeviceCode:
        """POST the device authorization request (form: client_id and scope)."""
        provider = tokens.provider
        request = TokenRequest(
            provider.device_authorization_endpoint or "",
            "form",
            (("client_id", provider.client_id), ("scope", " ".join(provider.scopes))),
        )
        response = await tokens.post(request, idempotent=False)
        return parse_device_authorization(response.status_code, response.content)

    async def poll(self, tokens: TokenClient, code: DeviceCode) -> AuthData | str:
        """The device_code grant at the token endpoint (section 3.4)."""
        provider = tokens.provider
        request = TokenRequest(
            provider.token_endpoint,
            "form",
            (
                ("grant_type", DEVICE_GRANT),
                ("device_code", code.device_code),
                ("client_id", provider.client_id),
            ),
        )
        response = await tokens.post(request, idempotent=False)
        if response.status_code == 200:
            return parse_token_response(
                200, response.content, provider=provider, now=time.time(), grant="device_code"
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


class DeviceFlow(AsyncClosing):
    """Log in with a code typed on another device.

    Args:
        provider: Needs ``device_authorization_endpoint`` (RFC 8628), or a provider whose
            dialect has its own variant (ChatGPT).
        storage: Where the tokens go.
        variant: How to request and poll (default: the provider's own variant, else
            `RFC8628`).
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
        variant: DeviceVariant | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        safety_margin: float = 0.2,
    ) -> None:
        from .providers import device_variant

        self.variant = variant or device_variant(provider) or RFC8628()
        if not self.variant.available(provider):
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
        return await self.variant.request_code(self._tokens)

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
        return await self.variant.poll(self._tokens, code)
