"""Device codes, sans storage: the `DeviceCode` shown to the user, the `DeviceVariant`
strategy (how a provider's device login requests a code and polls), and `RFC8628`, the
standard one. `DeviceFlow` (in ``_device``) runs the polling loop around a variant.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ._exceptions import AuthorizationError, CallbackTimeoutError, ValidationError
from ._protocol import TokenRequest, resource_field, scope_field
from ._token_response import error_code, parse_token_response, token_error

if TYPE_CHECKING:
    from ._login import AuthData
    from ._provider import ProviderConfig
    from ._token_client import TokenClient

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_GRANT",
    "RFC8628",
    "DeviceCode",
    "DeviceVariant",
    "parse_device_authorization",
]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0


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
            (("client_id", provider.client_id), *scope_field(provider), *resource_field(provider)),
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
                *resource_field(provider),
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
