"""vandamme-oauth: async OAuth 2.0 + PKCE sign-in and fleet-safe token refresh.

Log a user in once (``vandamme-oauth login chatgpt`` or ``await OAuthFlow(...).authenticate()``),
then call ``await manager.get_access_token()`` on the hot path of any async program.
"""

from __future__ import annotations

import logging as _logging
from importlib.util import find_spec as _find_spec
from typing import TYPE_CHECKING, Any

from ._exceptions import AuthorizationError as AuthorizationError
from ._exceptions import CallbackServerError as CallbackServerError
from ._exceptions import CallbackTimeoutError as CallbackTimeoutError
from ._exceptions import DiscoveryError as DiscoveryError
from ._exceptions import HttpError as HttpError
from ._exceptions import InsufficientScopeError as InsufficientScopeError
from ._exceptions import InvalidJWTError as InvalidJWTError
from ._exceptions import IssuerMismatchError as IssuerMismatchError
from ._exceptions import NetworkError as NetworkError
from ._exceptions import NotAuthenticatedError as NotAuthenticatedError
from ._exceptions import OAuthError as OAuthError
from ._exceptions import OAuthFlowError as OAuthFlowError
from ._exceptions import ReauthenticationRequired as ReauthenticationRequired
from ._exceptions import RegistrationError as RegistrationError
from ._exceptions import StateMismatchError as StateMismatchError
from ._exceptions import StorageError as StorageError
from ._exceptions import TokenEndpointError as TokenEndpointError
from ._exceptions import TokenError as TokenError
from ._exceptions import TokenLifetimeError as TokenLifetimeError
from ._exceptions import ValidationError as ValidationError

if TYPE_CHECKING:
    from ._device import DeviceCode as DeviceCode
    from ._device import DeviceFlow as DeviceFlow
    from ._dialect import Dialect as Dialect
    from ._dialect import dialect_named as dialect_named
    from ._flow import OAuthFlow as OAuthFlow
    from ._http_client import RetryPolicy as RetryPolicy
    from ._jwt_claims import decode_claims as decode_claims
    from ._pkce import PkcePair as PkcePair
    from ._pkce import new_pkce as new_pkce
    from ._pkce import new_state as new_state
    from ._pool import LoginPool as LoginPool
    from ._profiles import open_login as open_login
    from ._provider import ProviderConfig as ProviderConfig
    from ._registration import Registration as Registration
    from ._resource_discovery import provider_for_resource as provider_for_resource
    from ._token_client import TokenClient as TokenClient
    from ._token_manager import ManagerState as ManagerState
    from ._token_manager import TokenManager as TokenManager
    from .integrations._web_login import WebLogin as WebLogin
    from .storage import AuthData as AuthData
    from .storage import AuthStorage as AuthStorage
    from .storage import CodexAuthStorage as CodexAuthStorage
    from .storage import FileSystemAuthStorage as FileSystemAuthStorage
    from .storage import InMemoryAuthStorage as InMemoryAuthStorage
    from .storage import KeyringAuthStorage as KeyringAuthStorage
    from .storage._redis import RedisAuthStorage as RedisAuthStorage

#: Every public name but the exceptions loads on first use (PEP 562): ``import vandamme_oauth``
#: costs next to nothing, and a proxy that only serves tokens loads the manager and its
#: storage, never the interactive logins, the other backends or a provider's dialect
#: (``python -X importtime -c "from vandamme_oauth import TokenManager"``).
_LAZY = {
    "AuthData": ".storage",
    "AuthStorage": ".storage",
    "CodexAuthStorage": ".storage._codex",
    "DeviceCode": "._device",
    "DeviceFlow": "._device",
    "Dialect": "._dialect",
    "FileSystemAuthStorage": ".storage",
    "InMemoryAuthStorage": ".storage",
    "KeyringAuthStorage": ".storage._keyring",
    "LoginPool": "._pool",
    "ManagerState": "._token_manager",
    "OAuthFlow": "._flow",
    "PkcePair": "._pkce",
    "ProviderConfig": "._provider",
    "Registration": "._registration",
    "RedisAuthStorage": ".storage._redis",
    "RetryPolicy": "._http_client",
    "TokenClient": "._token_client",
    "TokenManager": "._token_manager",
    "WebLogin": ".integrations._web_login",
    "decode_claims": "._jwt_claims",
    "dialect_named": "._dialect",
    "new_pkce": "._pkce",
    "new_state": "._pkce",
    "open_login": "._profiles",
    "provider_for_resource": "._resource_discovery",
}

# A library configures no logging: without this, records of WARNING and above would reach
# Python's last-resort handler and repeat on stderr what the program already reports.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "AuthData",
    "AuthStorage",
    "AuthorizationError",
    "CallbackServerError",
    "CallbackTimeoutError",
    "CodexAuthStorage",
    "DeviceCode",
    "DeviceFlow",
    "Dialect",
    "DiscoveryError",
    "FileSystemAuthStorage",
    "HttpError",
    "InMemoryAuthStorage",
    "InsufficientScopeError",
    "InvalidJWTError",
    "IssuerMismatchError",
    "KeyringAuthStorage",
    "LoginPool",
    "ManagerState",
    "NetworkError",
    "NotAuthenticatedError",
    "OAuthError",
    "OAuthFlow",
    "OAuthFlowError",
    "PkcePair",
    "ProviderConfig",
    "ReauthenticationRequired",
    "RedisAuthStorage",
    "Registration",
    "RegistrationError",
    "RetryPolicy",
    "StateMismatchError",
    "StorageError",
    "TokenClient",
    "TokenEndpointError",
    "TokenError",
    "TokenLifetimeError",
    "TokenManager",
    "ValidationError",
    "WebLogin",
    "decode_claims",
    "dialect_named",
    "new_pkce",
    "new_state",
    "open_login",
    "provider_for_resource",
]


if _find_spec("redis") is None:
    # Without the redis extra, a star import must still work: it imports every name listed.
    __all__.remove("RedisAuthStorage")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        try:
            value = getattr(import_module(_LAZY[name], __name__), name)
        except ImportError as exc:
            if name != "RedisAuthStorage":
                raise
            # redis is an optional extra: say once which install fixes it.
            raise ImportError(
                "RedisAuthStorage needs the redis extra: pip install 'vandamme-oauth[redis]'"
            ) from exc
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    if name in ("storage", "integrations", "providers"):  # the subpackages, on first use
        from importlib import import_module

        return import_module(f".{name}", __name__)
    if name == "__version__":
        # Looked up lazily: importlib.metadata is slow to import.
        from importlib.metadata import version

        return version("vandamme-oauth")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
