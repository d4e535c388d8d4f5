"""Endpoint URL rules: HTTPS everywhere except loopback (RFC 9700 section 2.6, RFC 8252 8.3)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ._exceptions import ValidationError

__all__ = ["is_loopback_host", "require_endpoint_url"]


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
    """Return ``url`` if it is an absolute https URL, or http on a loopback host.

    Raises:
        ValidationError: naming ``what`` and why the URL is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValidationError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.fragment:
        raise ValidationError(f"{what} must not contain a fragment: {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValidationError(
            f"{what} must use https (plain http is only allowed on loopback): {url!r}"
        )
    return url
