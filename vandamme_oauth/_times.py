"""Checks for the numbers that arrive from outside: lifetimes and instants.

Token endpoints, JWTs and stored files are untrusted. Every number that becomes a time in
this library passes through one of these functions where it is parsed, so that nothing
further down (formatting for storage, comparisons on the hot path) ever meets a NaN, an
infinity, a boolean or a 400-digit integer.

The rules:

- A lifetime (``expires_in``) must be a real number (or a string of digits) above 0. One
  longer than :data:`MAX_LIFETIME` (10 years) is clamped to it: a provider that means "does
  not expire" still gets refreshed now and then.
- An instant (``exp``, ``expires_at``, ``last_refresh``) must be a finite number of seconds
  between the epoch and :data:`MAX_INSTANT` (the last second of the year 9999).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_INSTANT", "MAX_LIFETIME", "check_instant", "check_lifetime", "steady_clock"]

MAX_LIFETIME = 10 * 365 * 24 * 3600.0
MAX_INSTANT = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def _number(value: object) -> float | None:
    """``value`` as a float if it is a real, finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        # Clamp before converting: float() of a 400-digit integer raises OverflowError.
        value = max(min(value, 2**63), -(2**63))
    number = float(value)
    return number if math.isfinite(number) else None


def check_lifetime(value: object) -> float | str:
    """``expires_in`` in seconds, clamped to :data:`MAX_LIFETIME`, or why it is unusable.

    Returns:
        The lifetime as a float, or a short reason (a string) when it is not a positive
        number; the caller turns that into its own typed error.
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip()[:20])  # 20 digits are already far beyond the clamp
    number = _number(value)
    if number is None:
        return "is not a finite number"
    if number <= 0:
        return "is not positive"
    return min(number, MAX_LIFETIME)


def check_instant(value: object) -> float | None:
    """A time in seconds since the epoch, or None when it is not a usable instant."""
    number = _number(value)
    if number is None or not 0 <= number <= MAX_INSTANT:
        return None
    return number


def _steady_clock() -> Callable[[], float]:
    """The best clock the platform has that neither steps (NTP, a user setting the time) nor
    stops while the machine sleeps: Linux ``CLOCK_BOOTTIME``; macOS and the BSDs
    ``CLOCK_MONOTONIC`` (which counts sleep there); elsewhere (Windows) `time.monotonic`."""
    import sys
    import time

    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is None and sys.platform != "win32" and not sys.platform.startswith("linux"):
        clock_id = getattr(time, "CLOCK_MONOTONIC", None)
    if clock_id is None:
        return time.monotonic
    return functools.partial(time.clock_gettime, clock_id)


#: Seconds on a clock that neither steps nor stops during suspend (see `_steady_clock`): the
#: token manager anchors each login's expiry to it once, when the login is adopted.
steady_clock: Callable[[], float] = _steady_clock()
