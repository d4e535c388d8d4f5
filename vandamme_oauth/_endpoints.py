"""What the token clients of one token endpoint share, per event loop: one HTTP client (one
connection pool, one SSL context) for those that did not bring their own, a bound on the
refreshes in flight, and a pause for all after a 429.

Thousands of managers on one provider then cost one pool, and logins obtained together
that come due together reach the provider at most ``max_refreshes`` at a time; when the
provider answers 429, the others hold off (a transient error carrying the wait, no request)
instead of each learning it for itself.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._exceptions import TokenEndpointError
from ._http_client import new_http_client, shared_ssl_context

if TYPE_CHECKING:
    import httpx

__all__ = ["Endpoint", "endpoint_for", "origin_of"]

#: Refreshes in flight at once per token endpoint, unless a manager says otherwise.
DEFAULT_MAX_REFRESHES = 16
#: The longest pause a 429's Retry-After imposes on every refresh to its endpoint.
MAX_PAUSE = 60.0


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(eq=False)
class Endpoint:
    """One token endpoint's shared state in one event loop."""

    origin: str
    slots: asyncio.Semaphore
    max_refreshes: int
    client: httpx.AsyncClient | None = None
    users: int = 0  # token clients using ``client``
    paused_until: float = -1.0  # on the token clients' clock: no refresh before (a 429)
    in_flight: int = 0
    most_in_flight: int = 0
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def use_client(self) -> httpx.AsyncClient:
        """The shared client (made on first use, off the loop); count this user."""
        async with self._opening:
            if self.client is None:
                self.client = new_http_client(verify=await shared_ssl_context())
            self.users += 1
            return self.client

    async def leave_client(self) -> None:
        """One user fewer; the last one closes the client."""
        self.users -= 1
        if self.users <= 0 and self.client is not None:
            client, self.client = self.client, None
            await client.aclose()

    def check_pause(self, now: float) -> None:
        """Raise the 429 the endpoint gave another refresh, while its pause lasts.

        Raises:
            TokenEndpointError: transient, with ``retry_after`` the rest of the pause.
        """
        wait = self.paused_until - now
        if wait > 0:
            raise TokenEndpointError(
                f"the token endpoint {self.origin} asked us to slow down (HTTP 429); "
                f"every refresh there waits {wait:.1f} s more",
                status_code=429,
                retry_after=wait,
            )

    def pause(self, seconds: float, now: float) -> None:
        """After a 429: no refresh to this endpoint for ``seconds`` (at most a minute)."""
        self.paused_until = max(self.paused_until, now + min(seconds, MAX_PAUSE))


_ENDPOINTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Endpoint]] = (
    weakref.WeakKeyDictionary()
)


def endpoint_for(url: str, *, max_refreshes: int = DEFAULT_MAX_REFRESHES) -> Endpoint:
    """The shared state of ``url``'s origin in the running event loop (the first caller's
    ``max_refreshes`` sets the bound)."""
    loop = asyncio.get_running_loop()
    endpoints = _ENDPOINTS.setdefault(loop, {})
    origin = origin_of(url)
    found = endpoints.get(origin)
    if found is None:
        found = Endpoint(origin, asyncio.Semaphore(max_refreshes), max_refreshes)
        endpoints[origin] = found
    return found
