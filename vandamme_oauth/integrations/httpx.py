"""``httpx.Auth`` backed by a [`TokenManager`][vandamme_oauth.TokenManager] (async clients only).

    client = httpx.AsyncClient(auth=TokenManagerAuth(manager))

Every request gets ``Authorization: Bearer <token>`` (and ``ChatGPT-Account-ID`` for the
ChatGPT provider). Request bodies are never read into memory (``requires_request_body`` is
False), so streaming uploads pass straight through. On a 401 the manager is told that token
was rejected (it refreshes once, however many requests report it) and the request is sent
once more with the new token, but only when its body can be replayed (bytes, not a stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._common import auth_headers, default_account_header

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from .._token_manager import TokenManager

__all__ = ["TokenManagerAuth"]

_DEFAULT = object()


class TokenManagerAuth(httpx.Auth):
    """Bearer auth from a TokenManager, with one refresh-and-retry on 401.

    Args:
        manager: The token manager to ask for tokens.
        account_header: Header carrying the account id; default ``ChatGPT-Account-ID`` for
            the ChatGPT provider and none otherwise. ``None`` disables it.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, manager: TokenManager, *, account_header: str | object | None = _DEFAULT):
        self._manager = manager
        self._account_header = (
            default_account_header(manager)
            if account_header is _DEFAULT
            else (account_header if isinstance(account_header, str) else None)
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Not supported: tokens come from an async manager."""
        raise RuntimeError(
            "TokenManagerAuth only works with httpx.AsyncClient (the token manager is async)"
        )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        auth = await self._manager.get_auth_data()
        request.headers.update(auth_headers(auth, self._account_header))
        response = yield request
        if response.status_code != 401:
            return
        self._manager.report_unauthorized(auth.access_token)
        if not isinstance(request.stream, httpx.ByteStream):
            return  # a streamed body was consumed: it cannot be sent again
        fresh = await self._manager.get_auth_data()
        if fresh.access_token == auth.access_token:
            return
        request.headers.update(auth_headers(fresh, self._account_header))
        yield request
