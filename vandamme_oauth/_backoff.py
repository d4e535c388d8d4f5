"""The library's one backoff formula, shared by every loop that waits after a failure: the
HTTP retries (`_http_client`, driven by stamina), the token manager's pause between failed
refreshes, and the device login's polling after network errors.

After ``failures`` failures in a row the wait is ``initial * 2 ** (failures - 1)``, capped at
``maximum``; with ``jitter`` a random share of it (full jitter, so that many clients do not
retry in step). A server's ``Retry-After`` is a floor, honoured up to ``maximum``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``initial`` seconds after the first failure, doubling, at most
    ``maximum``; ``jitter`` draws the wait uniformly below that."""

    initial: float
    maximum: float
    jitter: bool = False

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failures in a row (0 after none)."""
        if failures <= 0:
            wait = 0.0
        else:
            wait = min(self.maximum, self.initial * 2.0 ** min(failures - 1, 64))
            if self.jitter:
                wait = random.uniform(0.0, wait)  # noqa: S311 - jitter, not a secret
        if retry_after is not None:
            wait = max(wait, min(max(retry_after, 0.0), self.maximum))
        return wait
