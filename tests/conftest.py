"""Fixtures shared by every test: a controllable clock."""

from __future__ import annotations

import pytest


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at a fixed instant."""
    return FakeClock()
