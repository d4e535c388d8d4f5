"""Discovery's I/O: fetch the first metadata document that answers (RFC 8414, OIDC).

Only moves bytes: which URLs to try and what a document means are the core's
(`vandamme_oauth._provider.well_known_urls` and ``parse_metadata``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._exceptions import DiscoveryError, NetworkError, OAuthError
from ._http_client import RetryPolicy, open_http_client, send_with_retries

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpx

__all__ = ["fetch_metadata"]

log = logging.getLogger(__name__)


async def fetch_metadata(
    issuer: str, urls: Iterable[str], *, http_client: httpx.AsyncClient | None = None
) -> object:
    """The JSON document of the first of ``urls`` that answers 200 with JSON.

    Raises:
        DiscoveryError: the host cannot be reached at all, or no URL gave a JSON document
            (the message lists what each answered).
    """
    client = http_client or await open_http_client()
    errors: list[str] = []
    try:
        for url in urls:
            try:
                response = await send_with_retries(
                    client, "GET", url, idempotent=True, policy=RetryPolicy(attempts=2)
                )
            except NetworkError as exc:
                if not exc.sent:  # the host cannot be reached at all: say that, once
                    cause = exc.__cause__
                    raise DiscoveryError(
                        f"cannot reach {issuer} ({type(cause).__name__}: "
                        f"{str(cause) or 'no detail'}); check the issuer URL and your network"
                    ) from exc
                errors.append(f"{url}: {exc}")
                continue
            except OAuthError as exc:
                errors.append(f"{url}: {exc}")
                continue
            if response.status_code != 200:
                errors.append(f"{url}: HTTP {response.status_code}")
                continue
            try:
                document: object = response.json()
            except ValueError:
                errors.append(f"{url}: not JSON")
                continue
            log.debug("discovery document fetched", extra={"url": url})
            return document
    finally:
        if http_client is None:
            await client.aclose()
    raise DiscoveryError(
        f"no usable metadata for {issuer} ({'; '.join(errors)}); check the issuer URL"
    )
