"""JavaScript's ``JSON.stringify(JSON.parse(text))``, reproduced in Python.

The flow-step sender signs ``JSON.stringify(payload) + key``, so a
receiver must re-serialise the received bytes exactly as V8 would:

* own-property order: array-index keys (``"0"`` .. ``"4294967294"``)
  first in ascending numeric order, then the other keys in insertion
  order; a duplicate key keeps its first position and its last value;
* every number is an IEEE double, printed by ECMAScript
  ``Number::toString`` (shortest round-trip digits; ``1e21``, ``1e-7``,
  ``-0`` -> ``0``); non-finite numbers become ``null``;
* strings escape only ``"``, ``\\``, control characters and lone
  surrogates; everything else, U+2028 included, stays raw.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

_MAX_INDEX = 4294967294


class JSObject(list[tuple[str, Any]]):
    """A parsed JSON object as ``(key, value)`` pairs in JavaScript order."""


def is_array_index(key: str) -> bool:
    """Whether ``key`` is a canonical array index (ordered first by JS)."""
    if key == "0":
        return True
    if not key or len(key) > 10 or not key.isascii() or not key.isdigit() or key[0] == "0":
        return False
    return int(key) <= _MAX_INDEX


def js_object(pairs: Iterable[tuple[str, Any]]) -> JSObject:
    """Apply JavaScript's property-order and duplicate-key rules."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        values[key] = value  # a re-set key keeps its first position
    indexes = sorted((k for k in values if is_array_index(k)), key=int)
    others = [k for k in values if not is_array_index(k)]
    return JSObject((k, values[k]) for k in indexes + others)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def parse(text: str) -> Any:
    """Parse like ``JSON.parse``: every number a double, objects in JS order."""
    return json.loads(
        text,
        object_pairs_hook=js_object,
        parse_float=float,
        parse_int=float,
        parse_constant=_reject_constant,
    )


def number(value: float) -> str:
    """ECMAScript ``Number::toString`` for finite doubles; ``null`` otherwise."""
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + number(-value)
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    n = point - (len(digits) - len(stripped))
    s = stripped.rstrip("0")
    k = len(s)
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + s
    sign = "+" if n - 1 >= 0 else "-"
    head = s if k == 1 else s[0] + "." + s[1:]
    return f"{head}e{sign}{abs(n - 1)}"


_ESCAPE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def quote(text: str) -> str:
    """``JSON.stringify`` of a string (lone surrogates escaped in lowercase)."""
    return '"' + _ESCAPE.sub(_escape, text) + '"'


def stringify(value: Any) -> str:
    """``JSON.stringify(value)`` for parsed JSON (or plain Python data)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        try:
            return number(float(value))
        except OverflowError:
            return "null"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, Mapping) and not isinstance(value, JSObject):
        value = js_object((str(k), v) for k, v in value.items())
    # Plain loops, not generators: one Python frame per level of nesting, so
    # whatever depth the C parser took is re-serialised too.
    parts = []
    if isinstance(value, JSObject):
        for key, item in value:
            parts.append(quote(key) + ":" + stringify(item))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        for item in value:
            parts.append(stringify(item))
        return "[" + ",".join(parts) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")
