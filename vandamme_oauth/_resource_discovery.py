"""From a protected resource to a provider configuration: the I/O of the MCP authorization
profile. GET the resource without a token and read its 401 challenge; fetch its RFC 9728
metadata (checked against the resource: mix-up defence) and its authorization server's
metadata (which must offer S256 PKCE); find a client id: the one given, a Client ID Metadata
Document URL the server accepts, or an RFC 7591 registration.

What the documents mean is the core's (`_challenges`, `_resource`, `_registration`); this
module only moves bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._challenges import Challenge, bearer_challenge
from ._discovery import fetch_metadata
from ._exceptions import DiscoveryError, NetworkError, RegistrationError, ValidationError
from ._http_client import RetryPolicy, open_http_client, send_with_retries
from ._login import login_name
from ._provider import parse_metadata
from ._registration import (
    DEVICE_GRANT,
    Registration,
    parse_registration,
    registration_request,
)
from ._resource import (
    ResourceMetadata,
    authorization_server_metadata_urls,
    canonical_resource,
    choose_scopes,
    parse_resource_metadata,
    resource_metadata_urls,
)
from ._validation import require_endpoint_url

if TYPE_CHECKING:
    import httpx

    from ._provider import AuthMethod, ProviderConfig

__all__ = ["ProtectedResource", "discover_resource", "provider_for_resource", "register_client"]

log = logging.getLogger(__name__)

#: The redirect URI a registration names: loopback, any port (RFC 8252 section 7.3).
REDIRECT_URI = "http://127.0.0.1/auth/callback"


@dataclass(frozen=True)
class ProtectedResource:
    """What discovery learned of a resource: its metadata, the challenge it answered with
    (None if it answered without one), and its authorization server's metadata."""

    resource: str
    metadata: ResourceMetadata
    challenge: Challenge | None
    issuer: str
    server: Mapping[str, Any]


async def discover_resource(
    url: str, *, http_client: httpx.AsyncClient | None = None
) -> ProtectedResource:
    """Follow ``url``'s 401 to its authorization server.

    Raises:
        DiscoveryError: the resource, its metadata or its server's metadata cannot be had,
            the metadata is another resource's, or the server does not offer S256 PKCE.
        ValidationError: ``url`` is not a resource URL, or a challenge is malformed.
    """
    resource = canonical_resource(url)
    client = http_client or await open_http_client()
    try:
        try:
            response = await send_with_retries(
                client, "GET", resource, idempotent=True, policy=RetryPolicy(attempts=2)
            )
        except NetworkError as exc:
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            raise DiscoveryError(
                f"cannot reach the resource {resource} ({detail}); check the URL and your network"
            ) from exc
        challenge = None
        if response.status_code in (401, 403):
            challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
        hint = challenge.params.get("resource_metadata") if challenge else None
        if hint is not None:
            try:
                require_endpoint_url(hint, what="the challenge's resource_metadata")
            except ValidationError as exc:
                raise DiscoveryError(str(exc)) from None
        document = await fetch_metadata(
            resource, resource_metadata_urls(resource, hint), http_client=client
        )
        metadata = parse_resource_metadata(resource, document)
        issuer = metadata.authorization_servers[0]
        server = await fetch_metadata(
            issuer, authorization_server_metadata_urls(issuer), http_client=client
        )
    finally:
        if http_client is None:
            await client.aclose()
    if not isinstance(server, Mapping):
        raise DiscoveryError(f"the metadata of {issuer} is not a JSON object")
    named = server.get("issuer")
    if isinstance(named, str) and _same_root(named, issuer):
        issuer = named  # "https://as.example/" and "https://as.example": one server
    methods = server.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        raise DiscoveryError(
            f"{issuer} does not list S256 in code_challenge_methods_supported; the MCP "
            "authorization profile requires PKCE S256, so no login is attempted"
        )
    return ProtectedResource(resource, metadata, challenge, issuer, server)


def _same_root(a: str, b: str) -> bool:
    """Two spellings of one issuer at the root of its host, with and without the slash
    (resource metadata written by some SDKs adds one); any other difference is another
    issuer (RFC 8414 section 3.3)."""
    return a != b and a.rstrip("/") == b.rstrip("/") and urlsplit(a).path in ("", "/")


async def register_client(
    endpoint: str,
    scopes: tuple[str, ...],
    *,
    device: bool = False,
    http_client: httpx.AsyncClient | None = None,
) -> Registration:
    """Register a native public client at ``endpoint`` (RFC 7591), allowed the device grant
    too when ``device``.

    Raises:
        RegistrationError: refused, or the answer is unusable.
        NetworkError: the server could not be reached.
    """
    require_endpoint_url(endpoint, what="registration_endpoint")
    request = registration_request([REDIRECT_URI], scopes, device=device)
    body = json.dumps(request).encode()
    client = http_client or await open_http_client()
    try:
        response = await send_with_retries(
            client,
            "POST",
            endpoint,
            idempotent=False,
            policy=RetryPolicy(attempts=1),
            content=body,
            content_type="application/json",
        )
    finally:
        if http_client is None:
            await client.aclose()
    registration = parse_registration(endpoint, response.status_code, response.content)
    log.info("registered a client", extra={"endpoint": endpoint})
    if registration.grant_types is None:  # the server did not echo them: what we asked
        registration = replace(registration, grant_types=tuple(request["grant_types"]))
    return registration


async def registration_known(
    registration: Registration, *, http_client: httpx.AsyncClient | None = None
) -> bool:
    """Whether the server still knows ``registration`` (an RFC 7592 read of its
    management URI); True when it gave none to ask with."""
    uri, token = registration.registration_client_uri, registration.registration_access_token
    if uri is None or token is None:
        return True
    require_endpoint_url(uri, what="registration_client_uri")
    client = http_client or await open_http_client()
    try:
        response = await send_with_retries(
            client,
            "GET",
            uri,
            idempotent=True,
            policy=RetryPolicy(attempts=2),
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        if http_client is None:
            await client.aclose()
    # 401 (invalid_token: the client and its token are gone), 403 or 404: forgotten.
    return response.status_code not in (401, 403, 404)


async def provider_for_resource(
    url: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    client_metadata_url: str | None = None,
    registration: Registration | None = None,
    scopes: tuple[str, ...] | None = None,
    name: str | None = None,
    device: bool = False,
    http_client: httpx.AsyncClient | None = None,
) -> tuple[ProviderConfig, Registration | None]:
    """The provider configuration of a login to the resource ``url``, and the registration
    made for it (None when none was needed). The client id comes, in this order, from
    ``client_id``; an earlier ``registration`` (reused unless its secret expired or the
    server no longer knows it, as its RFC 7592 management URI tells); the
    Client ID Metadata Document at ``client_metadata_url`` when the server accepts those;
    a new RFC 7591 registration. With ``device``, the login is a device login (RFC 8628):
    a new registration asks for the device grant too, and an earlier one registered without
    it is replaced.

    Raises:
        DiscoveryError: see `discover_resource()`.
        RegistrationError: no client id could be had (the message says to pass one).
    """
    found = await discover_resource(url, http_client=http_client)
    server_scopes = found.server.get("scopes_supported")
    chosen = (
        tuple(scopes)
        if scopes
        else choose_scopes(
            found.challenge.scope if found.challenge else (),
            found.metadata,
            tuple(server_scopes) if isinstance(server_scopes, list) else None,
        )
    )
    made: Registration | None = None
    method: AuthMethod | None = None
    if client_id is None and registration is not None:
        if registration.secret_expired():
            log.info("the registered client's secret expired; registering again")
            registration = None
        elif device and not registration.allows(DEVICE_GRANT):
            log.info("the registered client may not use the device grant; registering again")
            registration = None
        elif not await registration_known(registration, http_client=http_client):
            log.info("the authorization server forgot the registered client; registering again")
            registration = None
    if client_id is None and registration is not None:
        client_id, client_secret = registration.client_id, registration.client_secret
        made = registration
    elif (
        client_id is None
        and client_metadata_url is not None
        and found.server.get("client_id_metadata_document_supported") is True
    ):
        require_endpoint_url(client_metadata_url, what="client_metadata_url")
        client_id = client_metadata_url
    elif (
        client_id is None
        and client_metadata_url is not None
        and not isinstance(found.server.get("registration_endpoint"), str)
    ):
        raise RegistrationError(
            f"{found.issuer} accepts neither Client ID Metadata Documents nor dynamic "
            "registration; register a client with it and pass its id (--client-id)"
        )
    elif client_id is None:
        endpoint = found.server.get("registration_endpoint")
        if not isinstance(endpoint, str):
            raise RegistrationError(
                f"{found.issuer} offers no dynamic client registration; register a client "
                "with it and pass its id (--client-id)"
            )
        listed = set(server_scopes) if isinstance(server_scopes, list) else set()
        registered = tuple(scope for scope in chosen if scope in listed)
        made = await register_client(endpoint, registered, device=device, http_client=http_client)
        client_id, client_secret = made.client_id, made.client_secret
    if made is not None and made.client_secret is not None:
        told = made.token_endpoint_auth_method
        method = "client_secret_post" if told == "client_secret_post" else "client_secret_basic"
    provider = parse_metadata(
        found.issuer,
        found.server,
        client_id=client_id,
        scopes=chosen,
        name=name or login_name(found.resource),
        client_secret=client_secret,
        token_endpoint_auth_method=method,
    )
    return provider.replace(resource=found.resource), made
