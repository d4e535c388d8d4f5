"""The auth flow the httpx and httpx2 adapters share (their ``Auth`` APIs are the same):
the manager's token on every request; one refresh and one retry on a 401; and what a
resource says when it wants a login or more scopes.

- A 401 while the manager holds no login: a resource asking for one (RFC 9728). The
  ``login`` hook runs (it signs in, e.g. with `provider_for_resource` and an `OAuthFlow`
  into the manager's storage) and the request is sent again; without a hook,
  `NotAuthenticatedError` names the command that logs in.
- A 403 ``insufficient_scope`` with a ``scope`` (RFC 6750 section 3.1): the hook is asked
  for a login with the scopes held and the scopes required (a step-up), once per request;
  without a hook, `InsufficientScopeError` names the scopes and the command.

A request is sent again only when its body can be replayed.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .._challenges import Challenge, bearer_challenge
from .._exceptions import InsufficientScopeError, NotAuthenticatedError, ValidationError
from ._common import DEFAULT, apply_headers, header_builder

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

    from .._login import AuthData
    from .._token_manager import TokenManager

__all__ = ["BearerAuth", "LoginHook", "LoginNeeded", "bearer_flow"]


@dataclass(frozen=True)
class LoginNeeded:
    """What a login hook is asked to do: sign in to ``resource`` with ``scopes`` and store
    the login where the manager reads it.

    Attributes:
        resource: The resource that asked (the provider's ``resource`` when it has one).
        scopes: The scopes to ask for (for a step-up: those held and those required).
        step_up: A 403 ``insufficient_scope`` asked, not a 401 without a login.
        challenge: The resource's ``WWW-Authenticate`` Bearer challenge, if it sent one.
    """

    resource: str
    scopes: tuple[str, ...]
    step_up: bool
    challenge: Challenge | None


#: ``async def login(needed: LoginNeeded) -> None``: runs a login (see `LoginNeeded`).
LoginHook: TypeAlias = Callable[[LoginNeeded], Awaitable[None]]


def _challenge(response: Any) -> Challenge | None:
    try:
        return bearer_challenge(response.headers.get_list("www-authenticate"))
    except ValidationError:
        return None  # a malformed challenge is no instruction


def _resource(manager: TokenManager, request: Any) -> str:
    if manager.provider.resource is not None:
        return manager.provider.resource
    url = request.url
    return f"{url.scheme}://{url.netloc.decode()}{url.path}"


async def bearer_flow(
    manager: TokenManager,
    request: Any,
    headers: Callable[[AuthData], Mapping[str, str]],
    replayable: Callable[[Any], bool],
    login: LoginHook | None,
) -> AsyncGenerator[Any, Any]:
    """The flow, on duck-typed requests and responses (httpx's or httpx2's)."""
    try:
        auth: AuthData | None = await manager.get_auth_data()
    except NotAuthenticatedError:
        auth = None
    if auth is not None:
        apply_headers(request.headers, headers(auth))
    response = yield request
    if response.status_code == 401 and auth is not None:
        manager.report_unauthorized(auth.access_token)
        if not replayable(request):
            return  # a streamed body was consumed: it cannot be sent again
        fresh = await manager.get_auth_data()
        if fresh.access_token != auth.access_token:
            apply_headers(request.headers, headers(fresh))
            yield request
        return
    if response.status_code == 401:
        challenge = _challenge(response)
        resource = _resource(manager, request)
        if login is None or not replayable(request):
            raise NotAuthenticatedError(
                f"{resource} needs a login; run: vandamme-oauth login --resource "
                f"{shlex.quote(resource)}"
            )
        await login(LoginNeeded(resource, challenge.scope if challenge else (), False, challenge))
        apply_headers(request.headers, headers(await manager.get_auth_data()))
        yield request
        return
    if response.status_code != 403 or auth is None:
        return
    challenge = _challenge(response)
    if challenge is None or challenge.params.get("error") != "insufficient_scope":
        return
    # Held: what the login asked for (offline_access among them, which a token's granted
    # scope may not repeat) and what the server says it granted.
    held = (*manager.provider.scopes, *(auth.scope.split() if auth.scope else ()))
    scopes = tuple(dict.fromkeys((*held, *challenge.scope)))
    resource = _resource(manager, request)
    if login is None or not replayable(request):
        options = " ".join(f"--scope {shlex.quote(scope)}" for scope in scopes)
        raise InsufficientScopeError(
            f"{resource} needs the scopes {' '.join(challenge.scope)}; log in again with "
            f"them: vandamme-oauth login {shlex.quote(manager.provider.name)} {options}",
            resource=resource,
            scopes=scopes,
        )
    await login(LoginNeeded(resource, scopes, True, challenge))
    manager.report_unauthorized(auth.access_token)  # take the new login from storage
    apply_headers(request.headers, headers(await manager.get_auth_data()))
    yield request


class BearerAuth:
    """What the httpx and httpx2 ``TokenManagerAuth`` classes share; each subclasses it with
    its library's ``Auth`` and says which request bodies can be sent again.

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
    ) -> None:
        self._manager = manager
        self._headers = header_builder(manager, account_header)
        self._login = login

    def sync_auth_flow(self, request: Any) -> Any:
        """Not supported: tokens come from an async manager."""
        raise RuntimeError(
            "TokenManagerAuth only works with an AsyncClient (the token manager is async)"
        )

    def _flow(self, request: Any, replayable: Callable[[Any], bool]) -> AsyncGenerator[Any, Any]:
        return bearer_flow(self._manager, request, self._headers, replayable, self._login)
