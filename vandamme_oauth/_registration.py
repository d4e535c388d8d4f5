"""Dynamic client registration (RFC 7591) as pure functions: the request a native public
client sends, and the registration read from the answer. The POST itself is the transport
layer's (`_resource_discovery`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import RegistrationError

__all__ = [
    "DEVICE_GRANT",
    "Registration",
    "parse_registration",
    "registration_request",
]

#: The name a registration gives the client, shown on consent screens.
CLIENT_NAME = "vandamme-oauth"


@dataclass(frozen=True)
class Registration:
    """A client registered at an authorization server (RFC 7591 section 3.2.1).

    Attributes:
        client_id: The client's id.
        client_secret: A secret, if the server issued one (never in ``repr``).
        client_secret_expires_at: When the secret expires (epoch seconds; None: never).
        registration_access_token: The RFC 7592 management token, if any (never in
            ``repr``).
        registration_client_uri: The RFC 7592 management URI, if any.
        token_endpoint_auth_method: How the client authenticates at the token endpoint.
        grant_types: The grants the client may use, as the server registered them (None:
            not known, for registrations kept before they were recorded).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    client_secret_expires_at: float | None = None
    registration_access_token: str | None = field(default=None, repr=False)
    registration_client_uri: str | None = None
    token_endpoint_auth_method: str = "none"  # noqa: S105 - a method's name
    grant_types: tuple[str, ...] | None = None

    def allows(self, grant_type: str) -> bool:
        """Whether the client may use ``grant_type`` (assumed when it is not known)."""
        return self.grant_types is None or grant_type in self.grant_types

    def secret_expired(self, now: float | None = None) -> bool:
        """Whether an issued secret has expired (a client without one never expires)."""
        if self.client_secret is None or self.client_secret_expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.client_secret_expires_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form without the secrets (they go to the keyring or a 0600 file)."""
        return {
            "client_id": self.client_id,
            "client_secret_expires_at": self.client_secret_expires_at,
            "registration_client_uri": self.registration_client_uri,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "grant_types": None if self.grant_types is None else list(self.grant_types),
        }


#: The device authorization grant (RFC 8628), registered for logins made with ``--device``.
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: The grants every registration asks for.
BASE_GRANTS = ("authorization_code", "refresh_token")


def registration_request(
    redirect_uris: list[str], scopes: tuple[str, ...], *, device: bool = False
) -> dict[str, Any]:
    """The metadata of a native public client (RFC 7591 section 2; RFC 8252 loopback
    redirects, any port): the code and refresh grants (and the device grant for a device
    login), no client authentication. ``scopes`` are the ones the server lists itself (a
    resource's own scopes are not the server's to register: servers refuse them as client
    metadata)."""
    request: dict[str, Any] = {
        "client_name": CLIENT_NAME,
        "application_type": "native",
        "redirect_uris": redirect_uris,
        "grant_types": [*BASE_GRANTS, DEVICE_GRANT] if device else list(BASE_GRANTS),
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    if scopes:
        request["scope"] = " ".join(scopes)
    return request


def parse_registration(endpoint: str, status: int, body: bytes) -> Registration:
    """The registration a server answered with.

    Raises:
        RegistrationError: the server refused (its ``error`` and description quoted), or
            the answer lacks a client id.
    """
    try:
        payload: object = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, Mapping):
        payload = {}
    if status not in (200, 201):
        error = payload.get("error") or f"HTTP {status}"
        description = payload.get("error_description")
        detail = f"{error}: {description}" if isinstance(description, str) else str(error)
        raise RegistrationError(
            f"dynamic client registration at {endpoint} was refused ({detail}); "
            "register a client with the provider and pass its id (--client-id)"
        )
    client_id = payload.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise RegistrationError(f"the registration answer of {endpoint} has no client_id")
    secret = payload.get("client_secret")
    expires = payload.get("client_secret_expires_at")
    token = payload.get("registration_access_token")
    uri = payload.get("registration_client_uri")
    method = payload.get("token_endpoint_auth_method")
    grants = payload.get("grant_types")
    return Registration(
        client_id=client_id,
        client_secret=secret if isinstance(secret, str) and secret else None,
        client_secret_expires_at=float(expires)
        if isinstance(expires, int | float) and expires > 0
        else None,
        registration_access_token=token if isinstance(token, str) else None,
        registration_client_uri=uri if isinstance(uri, str) else None,
        token_endpoint_auth_method=method
        if isinstance(method, str)
        else ("client_secret_basic" if isinstance(secret, str) and secret else "none"),
        grant_types=tuple(g for g in grants if isinstance(g, str))
        if isinstance(grants, list)
        else None,
    )
