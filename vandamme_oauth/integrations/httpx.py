"""``httpx.Auth`` backed by a [`TokenManager`][vandamme_oauth.TokenManager] (async clients only).

    client = httpx.AsyncClient(auth=TokenManagerAuth(manager))

Every request gets ``Authorization: Bearer <token>``; for the ChatGPT provider, the whole
header set of ChatGPT's backend (``ChatGPT-Account-ID``, ``originator``, the Codex-style
``User-Agent``; a ``session_id`` the client set passes through). Request bodies are never
read into memory (``requires_request_body`` is False), so streaming uploads pass straight
through. On a 401 the manager is told that token
was rejected (it refreshes once, however many requests report it) and the request is sent
once more with the new token, but only when its body can be replayed (bytes, not a stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._common import DEFAULT, apply_headers, header_builder

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from .._token_manager import TokenManager

__all__ = ["TokenManagerAuth"]


class TokenManagerAuth(httpx.Auth):
    """Bearer auth from a TokenManager, with one refresh-and-retry on 401.

    Args:
        manager: The token manager to ask for tokens.
        account_header: Header carrying the account id. Default: for the ChatGPT provider,
            ChatGPT's backend headers (`vandamme_oauth.providers.chatgpt.backend_headers`);
            for others, none. Naming a header (or ``None``) sends only ``Authorization``
            and that header.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, manager: TokenManager, *, account_header: str | object | None = DEFAULT):
        self._manager = manager
        self._headers = header_builder(manager, account_header)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Not supported: tokens come from an async manager."""
        raise RuntimeError(
            "TokenManagerAuth only works with httpx.AsyncClient (the token manager is async)"
        )

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        auth = await self._manager.get_auth_data()
        apply_headers(request.headers, self._headers(auth))
        response = yield request
        if response.status_code != 401:
            return
        self._manager.report_unauthorized(auth.access_token)
        if not isinstance(request.stream, httpx.ByteStream):
            return  # a streamed body was consumed: it cannot be sent again
        fresh = await self._manager.get_auth_data()
        if fresh.access_token == auth.access_token:
            return
        apply_headers(request.headers, self._headers(fresh))
        yield request
