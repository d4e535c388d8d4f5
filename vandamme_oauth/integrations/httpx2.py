"""``httpx2.Auth`` backed by a [`TokenManager`][vandamme_oauth.TokenManager] (async clients only).

    client = httpx2.AsyncClient(auth=TokenManagerAuth(manager))

The same adapter as `vandamme_oauth.integrations.httpx`, for httpx2, the fork the ``mcp``
SDK 2.x uses (``pip install "vandamme-oauth[httpx2]"``): hand it to the SDK's
streamable-HTTP client as its ``auth``.

Every request gets ``Authorization: Bearer <token>``; for the ChatGPT provider, the whole
header set of ChatGPT's backend (``ChatGPT-Account-ID``, ``originator``, the Codex-style
``User-Agent``; a ``session_id`` the client set passes through). Request bodies are never
read into memory (``requires_request_body`` is False), so streaming uploads pass straight
through. On a 401 the manager is told that token
was rejected (it refreshes once, however many requests report it) and the request is sent
once more with the new token, but only when its body can be replayed (bytes, not a stream).
A resource that asks for a login (a 401 with no login held) or for more scopes (a 403
``insufficient_scope``) gets one through the ``login`` hook, or a typed error naming the
command (see `vandamme_oauth.integrations._bearer_flow`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from ._bearer_flow import LoginHook, LoginNeeded, bearer_flow
from ._common import DEFAULT, header_builder

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from .._token_manager import TokenManager

__all__ = ["LoginHook", "LoginNeeded", "TokenManagerAuth"]


class TokenManagerAuth(httpx2.Auth):
    """Bearer auth from a TokenManager, with one refresh-and-retry on 401.

    Args:
        manager: The token manager to ask for tokens.
        account_header: Header carrying the account id. Default: for the ChatGPT provider,
            ChatGPT's backend headers (`vandamme_oauth.providers.chatgpt.backend_headers`);
            for others, none. Naming a header (or ``None``) sends only ``Authorization``
            and that header.
        login: ``async def login(needed: LoginNeeded) -> None``, run when a resource asks
            for a login or for more scopes (at most once per request); without it those
            raise `NotAuthenticatedError` / `InsufficientScopeError` naming the command.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        manager: TokenManager,
        *,
        account_header: str | object | None = DEFAULT,
        login: LoginHook | None = None,
    ):
        self._manager = manager
        self._headers = header_builder(manager, account_header)
        self._login = login

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        """Not supported: tokens come from an async manager."""
        raise RuntimeError(
            "TokenManagerAuth only works with httpx2.AsyncClient (the token manager is async)"
        )

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        flow = bearer_flow(self._manager, request, self._headers, _replayable, self._login)
        response: httpx2.Response | None = None
        while True:
            try:
                sent = await flow.asend(response)
            except StopAsyncIteration:
                return
            response = yield sent


def _replayable(request: httpx2.Request) -> bool:
    return isinstance(request.stream, httpx2.ByteStream)
