"""What the adapters share: which headers a login adds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._provider import CHATGPT_ISSUER

if TYPE_CHECKING:
    from .._token_manager import TokenManager
    from ..storage._base import AuthData

__all__ = ["auth_headers", "default_account_header"]

ACCOUNT_HEADER = "ChatGPT-Account-ID"


def default_account_header(manager: TokenManager) -> str | None:
    """``ChatGPT-Account-ID`` for the ChatGPT provider, else no account header."""
    return ACCOUNT_HEADER if manager.provider.issuer == CHATGPT_ISSUER else None


def auth_headers(auth: AuthData, account_header: str | None) -> dict[str, str]:
    """``Authorization: Bearer …`` plus the account header when there is an account id."""
    headers = {"Authorization": f"Bearer {auth.access_token}"}
    if account_header and auth.account_id:
        headers[account_header] = auth.account_id
    return headers
