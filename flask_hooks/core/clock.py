"""Time is injected everywhere so tests can drive it without sleeping."""

from __future__ import annotations

import time
from typing import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time
