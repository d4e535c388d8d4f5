"""``httpx.Auth`` backed by a [`TokenManager`][vandamme_oauth.TokenManager] (async clients only).

    client = httpx.AsyncClient(auth=TokenManagerAuth(manager))

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

import httpx

from ._bearer_flow import BearerAuth, LoginHook, LoginNeeded

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

__all__ = ["LoginHook", "LoginNeeded", "TokenManagerAuth"]


class TokenManagerAuth(BearerAuth, httpx.Auth):
    """Bearer auth from a TokenManager for ``httpx.AsyncClient``, with one refresh-and-retry
    on 401 and a resource's login or step-up through the ``login`` hook (see `BearerAuth`
    in `vandamme_oauth.integrations._bearer_flow` for the arguments)."""

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return self._flow(request, _replayable)


def _replayable(request: httpx.Request) -> bool:
    """A body held in memory (not a stream already consumed) can be sent again."""
    return isinstance(request.stream, httpx.ByteStream)
