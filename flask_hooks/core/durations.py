"""What counts as a number of seconds in a setting, and how a refused one is shown.

Shared by the receiver's settings and the deferral queues' options, which
are checked when they are made rather than failing every delivery later.
"""

from __future__ import annotations

import math
from typing import Any

#: The longest time a setting takes: 100 years. Far longer ones overflow what
#: stores compute from them (Redis expiries in milliseconds, 64-bit integers).
MAX_SECONDS = 100 * 365.25 * 86400


def is_seconds(value: Any, *, integer: bool = False) -> bool:
    """Whether ``value`` is a finite number (NaN and infinities pass ``> 0``)."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        return False
    return isinstance(value, int) or math.isfinite(value)  # isfinite(10**400) overflows


def shown(value: Any) -> str:
    """``repr(value)``, bounded (an int of 5,000 digits cannot even be printed)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number that large"
    return text if len(text) <= 80 else text[:77] + "..."
