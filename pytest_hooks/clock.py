"""A frozen clock the plugin installs as every receiver's ``clock``.

Receivers read time only through ``Receiver.clock``, so a test drives
signature timestamps, tolerances, leases and dedupe TTLs by advancing
this object: nothing sleeps and nothing patches :func:`time.time`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable


class FakeClock:
    """Time that moves only when told to; call it like ``time.time``.

    ``start`` defaults to the current whole second, so forged timestamps
    look real to code that compares them with the wall clock.
    """

    def __init__(self, start: float | None = None) -> None:
        self.start = _finite(int(time.time()) if start is None else start, "start")
        self._now = self.start
        #: (when, order, owner, action): what the retry simulator does once the clock passes ``when``.
        self._alarms: list[tuple[float, int, object, Callable[[], None]]] = []
        self._order = itertools.count()

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
        return self._move(_finite(self._now + seconds, "advance()"))

    def advance_to(self, when: float) -> float:
        """Move forward to ``when``; a time already passed leaves the clock alone."""
        return self._move(_finite(when, "advance_to()"))

    def _move(self, when: float) -> float:
        """Move forward to ``when``, stopping at each alarm passed on the way to run it."""
        while self._alarms and self._alarms[0][0] < when:
            at, _, _, action = heapq.heappop(self._alarms)
            self._now = max(self._now, at)
            action()
        self._now = max(self._now, when)
        return self._now

    def _call_after(self, when: float, action: Callable[[], None], owner: object) -> None:
        """Run ``action`` when the clock moves past ``when``.

        The retry simulator's own hook: a handler that moves the clock past
        the sender's timeout is still running when the sender gives up and
        retries, so those happen from inside its ``advance``.
        """
        heapq.heappush(self._alarms, (when, next(self._order), owner, action))

    def _clear_alarms(self, owner: object) -> None:
        """Drop ``owner``'s alarms (a send inside a handler leaves the outer one's)."""
        self._alarms = [alarm for alarm in self._alarms if alarm[2] is not owner]
        heapq.heapify(self._alarms)

    def __repr__(self) -> str:
        return f"<FakeClock {self._now:.3f} (+{self.elapsed:g} s)>"


def _finite(value: float, what: str) -> float:
    """``value`` as a float; NaN passes every comparison (``advance(nan)`` went "forward")
    and infinity no timestamp can be made of, so a clock at either breaks far from here."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} takes a finite number of seconds, not {value!r}")
    return number
