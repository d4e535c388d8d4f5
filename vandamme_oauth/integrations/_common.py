"""What the adapters share: which headers a login adds to a request."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .._login import AuthData
    from .._token_manager import TokenManager

__all__ = ["DEFAULT", "apply_headers", "header_builder"]

DEFAULT: object = object()


def header_builder(
    manager: TokenManager, account_header: str | object | None = DEFAULT
) -> Callable[[AuthData], Mapping[str, str]]:
    """How a request carries ``manager``'s login.

    Unless ``account_header`` is given: the headers of the provider's dialect
    (``Dialect.api_headers``; for ChatGPT, the header set of its backend,
    `vandamme_oauth.providers.chatgpt.backend_headers`). Otherwise ``Authorization: Bearer …``,
    plus ``account_header`` naming the account id when given.
    """
    if account_header is DEFAULT:
        return manager.provider.dialect.api_headers
    name = account_header if isinstance(account_header, str) else None

    def bearer(auth: AuthData) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {auth.access_token}"}
        if name and auth.account_id:
            headers[name] = auth.account_id
        return headers

    return bearer


def apply_headers(target: dict[str, str] | object, headers: Mapping[str, str]) -> None:
    """Set ``headers`` on a request's header mapping, keeping a ``session_id`` the client
    set itself (its conversation id passes through)."""
    mapping = target  # httpx.Headers and multidict.CIMultiDict both behave as mappings
    for key, value in headers.items():
        if key.lower() == "session_id" and key in mapping:  # type: ignore[operator]
            continue
        mapping[key] = value  # type: ignore[index]
