"""aiohttp adapters: a client middleware, and login routes for aiohttp web apps.

Client::

    middleware = TokenManagerMiddleware(manager, origins=["https://chatgpt.com"])
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session: ...

Requests to the configured origins get ``Authorization: Bearer <token>`` (for ChatGPT, the
backend's whole header set, as `TokenManagerAuth` sends it); requests to any other origin,
such as the target of a redirect, pass through untouched, so the token never leaks to
another host. On a 401 the manager refreshes once and the request is retried once if its
body can be sent again. Token calls use the manager's own httpx client, so the middleware
never recurses.

Web apps that sign their own users in: see `setup_login()` (and
`vandamme_oauth.integrations.starlette`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, web
from yarl import URL

from .._exceptions import OAuthError
from ._common import DEFAULT, apply_headers, header_builder

if TYPE_CHECKING:
    from .._token_manager import TokenManager
    from ..storage._base import AuthData
    from ._web_login import WebLogin

__all__ = ["TokenManagerMiddleware", "setup_login"]


class TokenManagerMiddleware:
    """An aiohttp client middleware adding tokens from a TokenManager, pinned to origins.

    Args:
        manager: The token manager.
        origins: The only origins (``scheme://host[:port]``) that receive the token.
        account_header: As for `TokenManagerAuth`.
    """

    def __init__(
        self,
        manager: TokenManager,
        *,
        origins: Iterable[str],
        account_header: str | object | None = DEFAULT,
    ) -> None:
        self._manager = manager
        self._origins = frozenset(URL(o).origin() for o in origins)
        if not self._origins:
            raise ValueError("TokenManagerMiddleware needs at least one origin to send tokens to")
        self._headers = header_builder(manager, account_header)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if request.url.origin() not in self._origins:
            return await handler(request)
        auth = await self._manager.get_auth_data()
        apply_headers(request.headers, self._headers(auth))
        response = await handler(request)
        if response.status != 401:
            return response
        self._manager.report_unauthorized(auth.access_token)
        if getattr(request.body, "consumed", False):
            return response  # a streamed body cannot be sent again
        fresh = await self._manager.get_auth_data()
        if fresh.access_token == auth.access_token:
            return response
        response.release()
        apply_headers(request.headers, self._headers(fresh))
        return await handler(request)


UserKey = Callable[[web.Request], Awaitable[str]]
OnLogin = Callable[[web.Request, str, "AuthData"], Awaitable[web.StreamResponse]]


def setup_login(
    app: web.Application,
    login: WebLogin,
    *,
    user_key: UserKey,
    start_path: str = "/login",
    on_success: OnLogin | None = None,
    success_location: str = "/",
) -> None:
    """Mount the authorization start and the callback into ``app``.

    Args:
        app: The aiohttp application.
        login: The web login (provider, storages, secret, redirect URI).
        user_key: Returns the key under which this browser's user's tokens are stored
            (e.g. the user id from your session); it is bound to the login cookie.
        start_path: Where a user starts the login (GET).
        on_success: Builds the response after the tokens are stored; default a redirect
            to ``success_location``.
    """
    callback_path = URL(login.redirect_uri).path

    async def start(request: web.Request) -> web.StreamResponse:
        url, cookie = login.begin(await user_key(request))
        response = web.Response(status=302, headers={"Location": url})
        response.set_cookie(login.cookie_name, cookie, **login.cookie_options())
        return response

    async def callback(request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        try:
            key, auth = await login.complete(params, request.cookies.get(login.cookie_name))
        except OAuthError as exc:
            failed = web.Response(status=400, text=f"Sign-in failed: {exc.message}")
            failed.del_cookie(login.cookie_name, path=login.cookie_path)
            return failed
        response: web.StreamResponse = (
            await on_success(request, key, auth)
            if on_success is not None
            else web.Response(status=302, headers={"Location": success_location})
        )
        response.del_cookie(login.cookie_name, path=login.cookie_path)
        return response

    app.router.add_get(start_path, start)
    app.router.add_get(callback_path, callback)
