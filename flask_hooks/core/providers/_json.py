"""Strict JSON for bodies: what a sender may have signed, and nothing a handler cannot take.

The payload a handler gets is parsed again for each handler after the first,
by a replay and by a worker, each time deeper in some stack; Python's
parser gives up at a depth that depends on how much of the stack is already
used. So nesting is bounded here, well below that, and a body refused is
refused at receipt (a 400) rather than by a later parse (a 500 after a
first handler ran, on every retry).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import PayloadError

#: Deepest nesting of arrays and objects accepted (the top-level object is 1).
MAX_DEPTH = 512


def load_json(body: bytes) -> Any:
    """Parse JSON strictly: UTF-8 without a BOM (RFC 8259 section 8.1), no NaN/Infinity,
    no number that overflows a float (a 400 rather than ``inf`` in the handler's payload),
    nesting at most :data:`MAX_DEPTH` deep.

    The bytes are decoded strictly first: ``json.loads`` on bytes would
    also take UTF-16/32 and, through ``surrogatepass``, CESU-8 encoded
    surrogates (``b"\\xed\\xa0\\x80"``), handing the handler text no UTF-8
    sender wrote.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8") from None
    return load_json_text(text)


def load_json_text(text: str) -> Any:
    """:func:`load_json` for text already decoded (one strict decoder, built once)."""
    try:
        value = _STRICT.decode(text)
    except _Overflow:
        raise PayloadError("body has a number too large for a float (infinity is not JSON)") from None
    except RecursionError:
        raise PayloadError(_TOO_DEEP) from None
    except ValueError as exc:
        raise PayloadError("body is not JSON") from exc
    # Counting brackets is cheap and bounds the depth, so most bodies are never walked.
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise PayloadError(_TOO_DEEP)
    return value


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, which is what every sender here posts; else a 400."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    return payload


def dump(payload: Any) -> bytes:
    """Compact JSON bytes, as most senders emit; NaN and infinity, which are not JSON
    and which every receiver refuses, are a ValueError here rather than a forged 400."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


_TOO_DEEP = f"body is nested too deeply (over {MAX_DEPTH} levels)"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` deep (a loop, not
    recursion: the point is not to depend on the stack)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


class _Overflow(ValueError):
    """A number JSON allows but a float cannot hold (``1e999``, ``-1e400``)."""


def _finite(text: str) -> float:
    """``float(text)``, refusing what overflows to infinity, which no JSON encoder can
    write back. The scanner calls it only for numbers with a fraction or an exponent
    (integers are Python ints, never infinite), so a body without them costs nothing."""
    value = float(text)
    if math.isinf(value):
        raise _Overflow(text)
    return value


_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite)
