"""Small test doubles that are not fixtures."""

from __future__ import annotations


class ManualClock:
    """A clock the test moves by hand; receivers take it via ``clock=``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Crash(BaseException):
    """Stands in for a worker dying mid-handler: nothing below it runs."""
