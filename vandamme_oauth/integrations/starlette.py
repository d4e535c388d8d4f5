"""Starlette routes for a web app that signs its users in (extra ``starlette``).

    routes = login_routes(web_login, user_key=current_user_id)
    app = Starlette(routes=[*routes, ...])

See [`WebLogin`][vandamme_oauth.WebLogin] for the cookie and checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .._exceptions import OAuthError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from ..storage._base import AuthData
    from ._web_login import WebLogin

__all__ = ["login_routes"]


def login_routes(
    login: WebLogin,
    *,
    user_key: Callable[[Request], Awaitable[str]],
    start_path: str = "/login",
    on_success: Callable[[Request, str, AuthData], Awaitable[Response]] | None = None,
    success_location: str = "/",
) -> list[Route]:
    """The login start and callback routes (same contract as the aiohttp ``setup_login``)."""

    async def start(request: Request) -> Response:
        url, cookie = login.begin(await user_key(request))
        response = RedirectResponse(url, status_code=302)
        response.set_cookie(login.cookie_name, cookie, **login.cookie_options())
        return response

    async def callback(request: Request) -> Response:
        try:
            key, auth = await login.complete(
                dict(request.query_params), request.cookies.get(login.cookie_name)
            )
        except OAuthError as exc:
            failed = PlainTextResponse(f"Sign-in failed: {exc.message}", status_code=400)
            failed.delete_cookie(login.cookie_name, path=login.cookie_path)
            return failed
        response = (
            await on_success(request, key, auth)
            if on_success is not None
            else RedirectResponse(success_location, status_code=302)
        )
        response.delete_cookie(login.cookie_name, path=login.cookie_path)
        return response

    return [
        Route(start_path, start, methods=["GET"]),
        Route(urlsplit(login.redirect_uri).path, callback, methods=["GET"]),
    ]
