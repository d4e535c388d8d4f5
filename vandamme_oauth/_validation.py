"""Endpoint URL rules: HTTPS everywhere except loopback (RFC 9700 section 2.6, RFC 8252 8.3)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ._exceptions import ValidationError

__all__ = ["DIRECT_HOSTS", "is_loopback_host", "require_endpoint_url"]

#: The loopback hosts the library's HTTP client always reaches directly, whatever proxy the
#: environment names (`_http_client.new_http_client` mounts them): the only hosts where a
#: plain-http endpoint is allowed, since a request to any other would go through the proxy,
#: secrets and all, in clear text.
DIRECT_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_endpoint_url(url: str, *, what: str) -> str:
    """Return ``url`` if it is an absolute https URL, or http on one of `DIRECT_HOSTS`.

    Raises:
        ValidationError: naming ``what`` and why the URL is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValidationError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment:
        raise ValidationError(f"{what} must not contain a fragment: {url!r}")
    if parts.scheme == "http" and parts.hostname.lower() not in DIRECT_HOSTS:
        raise ValidationError(
            f"{what} must use https (plain http is only allowed on 127.0.0.1, [::1] or "
            f"localhost, which no proxy ever sees): {url!r}"
        )
    return url
