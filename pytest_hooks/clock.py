"""A frozen clock the plugin installs as every receiver's ``clock``.

Receivers read time only through ``Receiver.clock``, so a test drives
signature timestamps, tolerances, leases and dedupe TTLs by advancing
this object: nothing sleeps and nothing patches :func:`time.time`.
"""

from __future__ import annotations

import math
import time


class FakeClock:
    """Time that moves only when told to; call it like ``time.time``.

    ``start`` defaults to the current whole second, so forged timestamps
    look real to code that compares them with the wall clock.
    """

    def __init__(self, start: float | None = None) -> None:
        self.start = _finite(int(time.time()) if start is None else start, "start")
        self._now = self.start

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        """The current fake time (unix seconds)."""
        return self._now

    @property
    def elapsed(self) -> float:
        """Seconds advanced since the clock was frozen."""
        return self._now - self.start

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` and return the new time."""
        if _finite(seconds, "advance()") < 0:
            raise ValueError(f"a clock only moves forward; advance({seconds!r}) would go back")
        self._now = _finite(self._now + seconds, "advance()")
        return self._now

    def advance_to(self, when: float) -> float:
        """Move forward to ``when``; a time already passed leaves the clock alone."""
        self._now = max(self._now, _finite(when, "advance_to()"))
        return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self._now:.3f} (+{self.elapsed:g} s)>"


def _finite(value: float, what: str) -> float:
    """``value`` as a float; NaN passes every comparison (``advance(nan)`` went "forward")
    and infinity no timestamp can be made of, so a clock at either breaks far from here."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} takes a finite number of seconds, not {value!r}")
    return number
