"""What counts as a number of seconds in a setting or a time to filter on, and how a refused one is shown.

Shared by the receiver's settings and the deferral queues' options, which
are checked when they are made rather than failing every delivery later.
"""

from __future__ import annotations

import math
from typing import Any, overload

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


@overload
def time_bound(name: str, value: None) -> None: ...
@overload
def time_bound(name: str, value: float) -> float: ...
def time_bound(name: str, value: Any) -> float | None:
    """A time to filter on as a float (an int of 20 digits overflows SQLite's integers),
    or a :class:`ValueError` for one no float holds (``math.isfinite(10**400)`` overflows)."""
    if value is None:
        return None
    try:
        finite = is_seconds(value) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError(f"{name} must be a finite time, not {shown(value)}")
    return float(value)
