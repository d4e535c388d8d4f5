"""The HTTP edge: one httpx.AsyncClient, bounded retries, transport errors mapped to ours.

Retries follow one rule: repeat a request only when repeating cannot spend anything.
Idempotent requests (discovery, revocation) are retried on transport errors, 429 and 5xx,
with exponential backoff, full jitter and ``Retry-After``. A request that is not idempotent
(a code exchange or a refresh: codes and rotating refresh tokens are single use) is retried
only when the connection could not be opened at all, so the server never saw it. The loop
itself is stamina's (attempts, total time, sleeping); the waits are the library's one
backoff formula (`_backoff.Backoff`), handed to stamina as a backoff hook.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import httpx

from . import _telemetry as telemetry
from ._backoff import Backoff
from ._exceptions import NetworkError
from ._validation import DIRECT_HOSTS

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping
    from types import ModuleType

__all__ = [
    "RetryPolicy",
    "load_retry_machinery",
    "new_http_client",
    "open_http_client",
    "parse_retry_after",
    "send_with_retries",
    "shared_ssl_context",
]

log = logging.getLogger(__name__)

USER_AGENT = "vandamme-oauth/0.1"
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, backoff from ``base_delay`` up to ``max_delay``,
    and no attempt that would start after ``deadline`` seconds (its wait is not taken).
    ``RetryPolicy(attempts=1)`` disables retries.
    """

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 8.0
    deadline: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the library's backoff with full
        jitter; ``Retry-After`` is a floor, up to ``max_delay``."""
        return Backoff(self.base_delay, self.max_delay, jitter=True).delay(attempt + 1, retry_after)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_ssl_context: ssl.SSLContext | None = None


async def shared_ssl_context() -> ssl.SSLContext:
    """The one SSL context of every client the library makes, built once, in a worker
    thread: loading the CA bundle takes tens of milliseconds, never spent on the event loop.
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured, as httpx does."""
    global _ssl_context
    if _ssl_context is None:
        # Two first callers may both build one; either is fine.
        _ssl_context = await anyio.to_thread.run_sync(httpx.create_ssl_context)
    return _ssl_context


async def open_http_client(*, timeout: float = 30.0) -> httpx.AsyncClient:
    """`new_http_client()` with the shared SSL context (nothing blocks the loop)."""
    return new_http_client(timeout=timeout, verify=await shared_ssl_context())


def new_http_client(
    *, timeout: float = 30.0, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """An AsyncClient that honours proxy environment variables but never proxies loopback.

    ``verify=True`` loads the CA bundle here, blocking: in a coroutine use
    `open_http_client()`."""
    direct = httpx.AsyncHTTPTransport(verify=verify)
    return httpx.AsyncClient(
        verify=verify,
        timeout=httpx.Timeout(timeout, connect=10.0),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
        trust_env=True,
        mounts={f"all://{_bracketed(host)}": direct for host in DIRECT_HOSTS},
    )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def send_with_retries(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    idempotent: bool,
    policy: RetryPolicy,
    content: bytes | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request, retrying only where that is safe (see the module docstring).

    Returns the last response, whatever its status: callers judge statuses themselves.

    Raises:
        NetworkError: no response arrived (``sent`` says whether the server may have seen it).
    """
    headers = {**(headers or {}), **({"Content-Type": content_type} if content_type else {})}

    started = time.monotonic()

    def backoff(exc: Exception) -> bool | float:
        # The hook stamina asks before each retry: ours to retry, with our formula's wait.
        if not isinstance(exc, _Retry):
            return False
        wait = policy.delay(exc.attempt, exc.retry_after)
        if time.monotonic() - started + wait > policy.deadline:
            return False  # the next attempt would start after the deadline: none
        log.debug(
            "retrying request",
            extra={"url": url, "attempt": exc.attempt + 1, "wait_s": round(wait, 3)},
        )
        return wait

    stamina = await _stamina()
    attempt = 0
    with telemetry.request_retries(url, method):  # stamina's retries in here are ours
        try:
            async for trying in stamina.retry_context(
                on=backoff, attempts=policy.attempts, timeout=policy.deadline
            ):
                with trying:
                    attempt += 1
                    last = attempt >= policy.attempts
                    try:
                        response = await client.request(
                            method, url, content=content, headers=headers
                        )
                    except httpx.TransportError as exc:
                        never_sent = isinstance(exc, _NEVER_SENT)
                        detail = str(exc) or "no detail"
                        error = NetworkError(
                            f"could not reach {url}: {type(exc).__name__}: {detail}",
                            sent=not never_sent,
                        )
                        if (idempotent or never_sent) and not last:
                            raise _Retry(attempt - 1, error=error) from exc
                        raise error from exc
                    retryable = response.status_code == 429 or response.status_code >= 500
                    if idempotent and retryable and not last:
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise _Retry(attempt - 1, response=response, retry_after=retry_after)
                    return response
        except _Retry as exc:  # stamina's time budget ran out: the last outcome stands
            if exc.error is not None:
                raise exc.error from exc.__cause__
            if exc.response is not None:
                return exc.response
    raise AssertionError("unreachable: stamina's loop returns or raises")  # pragma: no cover


async def load_retry_machinery() -> None:
    """Import stamina now, in a worker thread, so that a first request does not wait."""
    await _stamina()


async def _stamina() -> ModuleType:
    """stamina, imported in a worker thread the first time (it pulls in tenacity: tens of
    milliseconds that must not stall the event loop, nor every ``import vandamme_oauth``)."""
    module = sys.modules.get("stamina")
    if module is None:
        module = await anyio.to_thread.run_sync(importlib.import_module, "stamina")
    stamina_log = logging.getLogger("stamina")
    if not any(isinstance(h, logging.NullHandler) for h in stamina_log.handlers):
        # stamina announces each retry it schedules as a WARNING on its logger. Like our own
        # logger, it stays silent unless the program configures logging: without this, the
        # retries we make would reach Python's last-resort handler and print bare
        # "stamina.retry_scheduled" lines in programs that log nothing.
        stamina_log.addHandler(logging.NullHandler())
    return module


class _Retry(Exception):
    """An attempt that may be repeated: its response (429/5xx) or its network error."""

    def __init__(
        self,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: NetworkError | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__("retry")
        self.attempt, self.response, self.error = attempt, response, error
        self.retry_after = retry_after
