"""What a delivery's id and type may be: text every store keeps and every log quotes safely.

They are keys in stores and lines in logs. :func:`check_id_and_type` is
run on every delivery once its provider has parsed it; a value it refuses
is the sender's error, a 400.
"""

from __future__ import annotations

import re

from .errors import PayloadError
from .inbox import is_text


def check_id_and_type(id: str, type: str) -> None:
    """Raise :class:`PayloadError` for an id or a type that :func:`_check` refuses."""
    plain = id.isascii() and id.isprintable()  # printable ASCII needs no check
    if not (plain and type.isascii() and type.isprintable()):
        _check("id", id)
        _check("type", type)


def is_plain(value: str) -> bool:
    """Whether ``value`` is text every store keeps and every log quotes on one line:
    what :func:`check_id_and_type` accepts, and so all a handler's name or pattern,
    a namespace or a receiver's URL may hold."""
    return is_text(value) and not _CONTROL.search(value)


def _check(field: str, value: str) -> None:
    """Ids and types are keys in stores and logs: they must be text every store can write.

    A lone surrogate (``"\\ud800"`` in the JSON) is valid for Python but no
    store can write it, and PostgreSQL's text holds no NUL; either is the
    sender's error, so a 400, not a 500 or a 503 on every retry. A control
    character (a newline) would let an id write lines of its own into the
    app's log, where ids are quoted as they are.
    """
    if not is_text(value):
        raise PayloadError(f"invalid {field}: not text every store can keep (a NUL or a lone surrogate)")
    if _CONTROL.search(value):
        raise PayloadError(f"invalid {field}: it has a control character (a newline, an escape)")


#: C0 and C1 control characters (Unicode category Cc) but the tab, which writes no line.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
