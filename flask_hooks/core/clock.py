"""Time is injected everywhere so tests can drive it without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time
