"""The library's one backoff formula (_backoff.Backoff): doubling from ``initial`` up to
``maximum``, optional full jitter, Retry-After as a floor up to ``maximum``."""

from __future__ import annotations

import pytest

from vandamme_oauth._backoff import Backoff


def test_doubles_from_initial_up_to_the_maximum() -> None:
    """1, 2, 4, 8 ... capped; nothing to wait before the first failure; no overflow."""
    backoff = Backoff(1.0, 60.0)
    assert [backoff.delay(n) for n in range(9)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff.delay(10_000) == 60.0


def test_retry_after_is_a_floor_up_to_the_maximum() -> None:
    """A server's Retry-After lengthens a wait, never beyond the maximum; a negative one is
    nothing."""
    backoff = Backoff(1.0, 60.0)
    assert backoff.delay(1, 30.0) == 30.0
    assert backoff.delay(7, 30.0) == 60.0  # the formula's wait is longer
    assert backoff.delay(1, 3600.0) == 60.0
    assert backoff.delay(2, -5.0) == 2.0
    assert backoff.delay(0, 5.0) == 5.0
    assert Backoff(0.0, 60.0).delay(1, 0.0) == 0.0  # "Retry-After: 0" asks for no wait
    assert Backoff(0.0, 60.0).delay(1, 0.5) == 0.5


@pytest.mark.parametrize("failures", [1, 2, 3, 8])
def test_full_jitter_stays_below_the_wait(failures: int) -> None:
    """With jitter the wait is drawn from [0, the formula's wait]; draws differ."""
    backoff = Backoff(0.25, 8.0, jitter=True)
    cap = min(8.0, 0.25 * 2 ** (failures - 1))
    draws = {backoff.delay(failures) for _ in range(200)}
    assert all(0.0 <= d <= cap for d in draws)
    assert len(draws) > 100
