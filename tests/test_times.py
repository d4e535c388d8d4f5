"""The checks for untrusted numbers: lifetimes clamped or refused, instants bounded."""

from __future__ import annotations

import math

import pytest

from vandamme_oauth._times import MAX_INSTANT, MAX_LIFETIME, check_instant, check_lifetime


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3600, 3600.0),
        (0.5, 0.5),
        ("3600", 3600.0),
        (" 60 ", 60.0),
        (MAX_LIFETIME, MAX_LIFETIME),
        (MAX_LIFETIME + 1, MAX_LIFETIME),
        (1e12, MAX_LIFETIME),
        (10**400, MAX_LIFETIME),
        ("9" * 400, MAX_LIFETIME),
    ],
)
def test_usable_lifetimes_are_kept_or_clamped(value: object, expected: float) -> None:
    """Positive numbers (or digit strings) are kept; beyond ten years they are clamped."""
    assert check_lifetime(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "is not positive"),
        (-1, "is not positive"),
        (-(10**400), "is not positive"),
        (math.nan, "is not a finite number"),
        (math.inf, "is not a finite number"),
        (True, "is not a finite number"),
        (None, "is not a finite number"),
        ("soon", "is not a finite number"),
        ("-5", "is not a finite number"),
        ([], "is not a finite number"),
    ],
)
def test_unusable_lifetimes_say_why(value: object, reason: str) -> None:
    """Anything else is refused with a reason the caller puts in its typed error."""
    assert check_lifetime(value) == reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1_800_000_000, 1_800_000_000.0),
        (1_800_000_000.5, 1_800_000_000.5),
        (MAX_INSTANT, MAX_INSTANT),
        (MAX_INSTANT + 1, None),
        (-1, None),
        (math.nan, None),
        (-math.inf, None),
        (10**400, None),
        (False, None),
        ("1800000000", None),
        (None, None),
    ],
)
def test_instants_are_bounded(value: object, expected: float | None) -> None:
    """An instant is a finite number of seconds from 1970 to the end of 9999."""
    assert check_instant(value) == expected
