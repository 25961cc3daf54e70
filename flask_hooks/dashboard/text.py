"""What a page shows of a sender's text: characters that do not print escaped,
and a payload pretty-printed, credentials blanked, cut at a bound."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import NamedTuple

from ..core.scrub import scrub
from ..inbox import Delivery


def printable(text: str) -> str:
    """``text`` (an id, a type, a header) with what does not print escaped, as the CLI
    shows it: a sender's ``\\u202e`` cannot reorder the page around it, and ids that
    differ by an invisible character (``\\u200b``) or a line break look different."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def printable_lines(text: str) -> str:
    """A payload or a traceback: each line :func:`printable`, the line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


#: The most of a payload a page shows, in characters: pretty-printing can
#: multiply a body's size (every level of nesting indents each line inside
#: it), so a sender's megabyte could otherwise make a page of gigabytes.
PAYLOAD_SHOWN = 256 * 1024


class Shown(NamedTuple):
    text: str
    #: Whether ``text`` is only the beginning (the page says so).
    cut: bool = False


def payload_text(delivery: Delivery, secrets: Collection[str] = (), limit: int = PAYLOAD_SHOWN) -> Shown:
    """The body for the page: JSON pretty-printed with credential fields masked and
    ``secrets`` blanked, at most ``limit`` characters of it (the encoder stops there)."""
    if not delivery.body:
        return Shown("")
    shown = delivery.shown_payload(secrets)
    if shown is not None or delivery.body.strip() == b"null":
        encoder = json.JSONEncoder(indent=2, ensure_ascii=False)
        return _first(encoder.iterencode(shown), limit)
    if delivery.masked:
        return Shown("(The body is not JSON, and this provider sends credentials in its body: not shown.)")
    # Blanked whole, then cut: a secret across the cut would leave its beginning.
    return _first([scrub(delivery.body.decode("utf-8", "replace"), secrets)], limit)


def _first(chunks: Iterable[str], limit: int) -> Shown:
    """The chunks joined, cut after ``limit`` characters without reading further."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return Shown("".join(parts)[:limit], cut=True)
    return Shown("".join(parts))
