"""TokenClient: moves token requests over HTTP; all judgement lives in `_protocol`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from . import _telemetry as telemetry
from ._closing import AsyncClosing
from ._endpoints import DEFAULT_MAX_REFRESHES, Endpoint, endpoint_for
from ._exceptions import HttpError, NetworkError, TokenEndpointError
from ._http_client import (
    RetryPolicy,
    load_retry_machinery,
    parse_retry_after,
    send_with_retries,
)
from ._protocol import (
    TokenRequest,
    code_exchange_request,
    refresh_request,
    revoke_request,
)
from ._redact import redact_body
from ._token_response import Grant, parse_token_response

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from ._login import AuthData
    from ._provider import ProviderConfig

__all__ = ["TokenClient"]

log = logging.getLogger(__name__)


class TokenClient(AsyncClosing):
    """Code exchange, refresh and revocation against one provider.

    Args:
        provider: The provider's configuration.
        http_client: An AsyncClient to use (not closed by us); default our own.
        retry: Retry policy for requests that are safe to repeat.
        clock: Wall clock in seconds since the epoch (injectable for tests).
    """

    def __init__(
        self,
        provider: ProviderConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        max_refreshes: int = DEFAULT_MAX_REFRESHES,
    ) -> None:
        self.provider = provider
        self._owns_client = http_client is None
        self._client = http_client  # the endpoint's shared one is taken on first use
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._max_refreshes = max_refreshes
        self._endpoint: Endpoint | None = None

    def endpoint(self) -> Endpoint:
        """What the token clients of this token endpoint share in this event loop."""
        if self._endpoint is None:
            self._endpoint = endpoint_for(
                self.provider.token_endpoint, max_refreshes=self._max_refreshes
            )
        return self._endpoint

    async def aclose(self) -> None:
        """Stop using the endpoint's shared HTTP client (the last user closes it)."""
        client = self._client
        if self._owns_client and client is not None:
            self._client = None
            await self.endpoint().leave_client()

    async def open(self) -> None:
        """Make the HTTP client and load the retry machinery now (off the event loop),
        rather than at the first request."""
        await self._http()
        await load_retry_machinery()

    async def _http(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            client = await self.endpoint().use_client()
            if self._client is not None:  # another call took one while we waited
                await self.endpoint().leave_client()
                return self._client
            self._client = client
        return client

    async def post(self, request: TokenRequest, *, idempotent: bool) -> httpx.Response:
        """Send ``request`` with the client's authentication (a confidential client's
        secret), retried only where that is safe (see `_http_client`)."""
        request, headers = request.authenticated(self.provider)
        content, content_type = request.content()
        return await send_with_retries(
            await self._http(),
            "POST",
            request.url,
            idempotent=idempotent,
            policy=self._retry,
            content=content,
            content_type=content_type,
            headers=headers,
        )

    def _secrets(self, request: TokenRequest) -> tuple[str, ...]:
        """What to redact from an answer to ``request``: its secrets and the client's."""
        secret = self.provider.client_secret
        return (*request.secrets(), *((secret,) if secret else ()))

    async def _token_call(
        self, request: TokenRequest, *, grant: Grant, previous: AuthData | None
    ) -> AuthData:
        started = time.monotonic()
        # expires_in counts from when the server answered, which is after we sent: counting
        # from the moment we send errs on the early side, never the late one.
        sent_at = self._clock()
        log.debug("token request started", extra={"grant": grant, "url": request.url})
        try:
            response = await self.post(request, idempotent=False)
        except NetworkError as exc:
            log.warning(
                "token request failed: %s",
                exc,
                extra={"grant": grant, "sent": exc.sent, "duration_s": time.monotonic() - started},
            )
            raise
        try:
            result = parse_token_response(
                response.status_code,
                response.content,
                provider=self.provider,
                now=sent_at,
                grant=grant,
                previous=previous,
                url=request.url,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                secrets=self._secrets(request),
            )
        except Exception as exc:
            log.warning(
                "token request refused: %s",
                exc,
                extra={
                    "grant": grant,
                    "status": response.status_code,
                    "duration_s": time.monotonic() - started,
                },
            )
            raise
        log.info(
            "token request succeeded",
            extra={
                "grant": grant,
                "status": response.status_code,
                "duration_s": round(time.monotonic() - started, 4),
                "rotated": previous is not None and result.refresh_token != previous.refresh_token,
            },
        )
        return result

    async def exchange_code(self, *, code: str, redirect_uri: str, verifier: str) -> AuthData:
        """Exchange an authorization code (sent once: codes are single use).

        Raises:
            TokenEndpointError, TokenError: the server refused or answered nonsense.
            NetworkError: the server could not be reached.
        """
        request = code_exchange_request(
            self.provider, code=code, redirect_uri=redirect_uri, verifier=verifier
        )
        with telemetry.span("vandamme_oauth.code_exchange", self._attributes()):
            return await self._token_call(request, grant="authorization_code", previous=None)

    def _attributes(self) -> dict[str, str]:
        if not telemetry.enabled():
            return {}
        return telemetry.provider_attributes(self.provider)

    async def refresh(self, current: AuthData) -> AuthData:
        """Refresh ``current`` and merge the answer into it (never auto-retried once sent).

        Raises:
            ReauthenticationRequired: the refresh token is dead (or there is none).
            TokenEndpointError, TokenError, NetworkError: as for `exchange_code()`.
        """
        if not current.refresh_token:
            from ._exceptions import ReauthenticationRequired

            raise ReauthenticationRequired(
                "the stored login has no refresh token and its access token expired; log in again"
            )
        request = refresh_request(self.provider, current.refresh_token)
        endpoint = self.endpoint()
        endpoint.check_pause(self._clock())  # another refresh was told 429: no request
        async with endpoint.slots:  # at most max_refreshes in flight to this endpoint
            endpoint.check_pause(self._clock())
            endpoint.in_flight += 1
            endpoint.most_in_flight = max(endpoint.most_in_flight, endpoint.in_flight)
            try:
                return await self._token_call(request, grant="refresh_token", previous=current)
            except TokenEndpointError as exc:
                if exc.status_code == 429:
                    wait = exc.retry_after if exc.retry_after is not None else 1.0
                    endpoint.pause(wait, self._clock())
                raise
            finally:
                endpoint.in_flight -= 1

    async def revoke(self, data: AuthData) -> bool:
        """Revoke the refresh token (or the access token when there is none), RFC 7009.

        Returns:
            True when the server confirmed, False when the provider has no revocation endpoint.

        Raises:
            HttpError: the server refused; NetworkError: it could not be reached.
        """
        with telemetry.span("vandamme_oauth.revoke", self._attributes()):
            token, hint = (
                (data.refresh_token, "refresh_token")
                if data.refresh_token
                else (data.access_token, "access_token")
            )
            request = revoke_request(self.provider, token, hint)
            if request is None:
                return False
            response = await self.post(request, idempotent=True)
            if response.status_code != 200:
                raise HttpError(
                    f"the revocation endpoint answered HTTP {response.status_code}",
                    status_code=response.status_code,
                    reason=response.reason_phrase,
                    url=request.url,
                    body=redact_body(response.text, secrets=self._secrets(request)),
                )
            log.info("token revoked", extra={"hint": hint})
            return True
