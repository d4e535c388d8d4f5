"""Protected resources: from a resource URL to its authorization server and the scopes to
ask for (RFC 9728 protected-resource metadata, RFC 8414 and OpenID discovery URLs, RFC 8707
resource indicators, the MCP authorization profile). Pure functions, no I/O; the transport
layer fetches what these name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ._exceptions import DiscoveryError, ValidationError
from ._validation import require_endpoint_url

__all__ = [
    "ResourceMetadata",
    "authorization_server_metadata_urls",
    "canonical_resource",
    "choose_scopes",
    "parse_resource_metadata",
    "resource_metadata_urls",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_resource(url: str) -> str:
    """A resource's identifier as RFC 8707 section 2 wants it (an absolute URI without a
    fragment), in one spelling: scheme and host in lower case, no default port, and no
    slash for an empty path. Query strings are kept (they are part of the identifier).

    Raises:
        ValidationError: not an absolute http(s) URL, or it has a fragment.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValidationError(f"a resource must be an absolute http(s) URL, not {url!r}")
    if parts.fragment or url.endswith("#"):
        raise ValidationError(f"a resource URL has no fragment (RFC 8707 section 2): {url!r}")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{parts.port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((scheme, host, path, parts.query, ""))


def resource_metadata_urls(resource: str, hinted: str | None = None) -> list[str]:
    """Where the resource's metadata may be, in the order to try (RFC 9728 section 3.1 and
    the MCP profile): the challenge's ``resource_metadata``, then the well-known URI with
    the resource's path inserted, then the one at the root."""
    parts = urlsplit(canonical_resource(resource))
    path = parts.path.rstrip("/")
    urls = [hinted] if hinted else []
    for suffix in (path, ""):
        urls.append(
            urlunsplit(
                (
                    parts.scheme,
                    parts.netloc,
                    f"/.well-known/oauth-protected-resource{suffix}",
                    "",
                    "",
                )
            )
        )
    return list(dict.fromkeys(urls))


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """An authorization server's metadata URLs in the MCP profile's order: RFC 8414 with the
    issuer's path inserted, OpenID Connect with it inserted, OpenID Connect appended (one
    of each when the issuer has no path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))

    return list(
        dict.fromkeys(
            [
                at(f"/.well-known/oauth-authorization-server{path}"),
                at(f"/.well-known/openid-configuration{path}"),
                at(f"{path}/.well-known/openid-configuration"),
            ]
        )
    )


@dataclass(frozen=True)
class ResourceMetadata:
    """What a protected resource says of itself (RFC 9728 section 2)."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] = ()
    resource_name: str | None = None


def _strings(document: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(f"the protected-resource metadata of {where} has a bad {key}")
    return tuple(value)


def parse_resource_metadata(resource: str, document: object) -> ResourceMetadata:
    """Read a protected-resource metadata document fetched for ``resource``.

    Raises:
        DiscoveryError: not a JSON object; its ``resource`` is not the resource we asked
            for (RFC 9728 section 3.3: a mix-up, or metadata of another resource); it names
            no authorization server, or one that is not an https URL (loopback aside).
    """
    wanted = canonical_resource(resource)
    if not isinstance(document, Mapping):
        raise DiscoveryError(f"the protected-resource metadata of {wanted} is not a JSON object")
    named = document.get("resource")
    try:
        same = isinstance(named, str) and canonical_resource(named) == wanted
    except ValidationError:
        same = False
    if not same:
        raise DiscoveryError(
            f"the protected-resource metadata of {wanted} names resource {named!r} "
            "(RFC 9728 section 3.3): refusing it, as it may send our login to another server"
        )
    servers = _strings(document, "authorization_servers", wanted)
    if not servers:
        raise DiscoveryError(
            f"the protected-resource metadata of {wanted} names no authorization server"
        )
    for server in servers:
        try:
            require_endpoint_url(server, what="authorization server")
        except ValidationError as exc:
            raise DiscoveryError(f"the protected-resource metadata of {wanted}: {exc}") from None
    name = document.get("resource_name")
    return ResourceMetadata(
        resource=wanted,
        authorization_servers=servers,
        scopes_supported=_strings(document, "scopes_supported", wanted),
        resource_name=name if isinstance(name, str) else None,
    )


def choose_scopes(
    challenged: tuple[str, ...],
    metadata: ResourceMetadata,
    server_scopes: tuple[str, ...] | None,
) -> tuple[str, ...]:
    """The scopes of a login to a resource (MCP's scope selection): the challenge's
    ``scope``, else the resource's ``scopes_supported``; plus ``offline_access`` when the
    authorization server lists it (the scope OpenID providers want before they issue a
    refresh token). Empty: send no ``scope`` and take the server's default."""
    scopes = challenged or metadata.scopes_supported
    if scopes and server_scopes and "offline_access" in server_scopes:
        scopes = (*scopes, "offline_access")
    return tuple(dict.fromkeys(scopes))
