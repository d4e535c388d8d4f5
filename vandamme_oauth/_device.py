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

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from . import _telemetry as telemetry
from ._backoff import Backoff
from ._closing import AsyncClosing
from ._device_codes import RFC8628, DeviceCode, DeviceVariant
from ._exceptions import (
    CallbackTimeoutError,
    NetworkError,
    ValidationError,
)
from ._http_client import RetryPolicy
from ._token_client import TokenClient
from .storage._base import store_login

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from ._provider import ProviderConfig
    from .storage._base import AuthData, AuthStorage

__all__ = ["RFC8628", "DeviceCode", "DeviceFlow", "DeviceVariant"]

log = logging.getLogger(__name__)

SLOW_DOWN_STEP = 5.0
NETWORK_BACKOFF_MAX = 60.0


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
        self.variant = variant or provider.dialect.device_variant() or RFC8628()
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
        with telemetry.login("device", self.provider):
            return await self._authenticate(timeout)

    async def _authenticate(self, timeout: float | None) -> AuthData:
        code = await self.request_code()
        log.info("device code issued", extra={"verification_uri": code.verification_uri})
        if self._on_code is not None:
            self._on_code(code)
        deadline = self._clock() + min(code.expires_in, timeout or code.expires_in)
        attributes = telemetry.provider_attributes(self.provider) if telemetry.enabled() else {}
        with telemetry.span("vandamme_oauth.device_poll", attributes):
            auth = await self._poll_until_approved(code, deadline)
        await store_login(self.storage, auth, self.provider.to_dict())
        log.info("device login stored", extra={"account_id": auth.account_id})
        return auth

    async def _poll_until_approved(self, code: DeviceCode, deadline: float) -> AuthData:
        """Poll at the server's pace (RFC 8628 3.5) until the user approves."""
        interval = code.interval
        network_failures = 0
        while True:
            # The server's interval plus the margin; after network errors, the library's
            # backoff from there (doubling, at most a minute beyond the interval).
            step = interval * (1 + self._margin)
            wait = Backoff(step, max(step, NETWORK_BACKOFF_MAX)).delay(network_failures + 1)
            if self._clock() + wait > deadline:
                raise CallbackTimeoutError(
                    "the device code expired before the sign-in was approved; start again"
                )
            await self._sleep(wait)
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
            return auth

    async def _poll(self, code: DeviceCode) -> AuthData | str:
        return await self.variant.poll(self._tokens, code)
