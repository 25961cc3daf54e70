"""Blanking credentials in text that quotes them: a traceback, a refused body's excerpt.

A handler's exception may quote what it was given (``KeyError(payload["secret"])``,
a validation error echoing its input), and a refused body may carry the
receiver's own secret; neither may show it where operators read.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

#: What a blanked credential reads as (the inbox's own marker).
REDACTED = "[redacted]"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``[redacted]``, however quoted.

    A handler's exception may quote what it was given (``KeyError(payload["secret"])``,
    a validation error echoing its input): its message must not carry the credential.
    It is found as written and as Python (``repr``/``ascii``, either quote
    escaped), JSON (``ensure_ascii`` or not) and URL encoding (``quote_plus``,
    ``quote``) spell it, and as those spell each other's (``repr`` of a JSON
    string, a URL in a ``repr``). Every character inside an occurrence is
    hidden, overlapping ones as one ``[redacted]``, so neither a shorter
    secret nor the order of the list can uncover part of another.

    A very short secret (one to three characters) blanks unrelated text too
    (every ``a``): it is replaced all the same, as a leak is worse than a
    hard-to-read traceback; an empty one is ignored.
    """
    spellings = {spelled for secret in set(secrets) if secret for spelled in _spellings(secret)}
    if not spellings:
        return text
    markers = [start for start, _ in _occurrences(text, REDACTED)]  # scrubbed before
    hidden = [
        (start, end)
        for spelled in spellings
        for start, end in _occurrences(text, spelled)
        if not _in_marker(markers, start, end)  # a short secret ("red") leaves them whole
    ]
    if not hidden:
        return text
    runs: list[list[int]] = []
    for start, end in sorted(hidden):
        if runs and start <= runs[-1][1]:  # overlapping or touching: one run
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    out: list[str] = []
    shown = 0
    for start, end in runs:
        out += (text[shown:start], REDACTED)
        shown = end
    out.append(text[shown:])
    return "".join(out)


def _in_marker(markers: list[int], start: int, end: int) -> bool:
    """Whether ``start:end`` lies inside one of the ``[redacted]`` at ``markers`` (sorted)."""
    i = bisect.bisect_right(markers, start) - 1
    return i >= 0 and end <= markers[i] + len(REDACTED)


def _occurrences(text: str, word: str) -> list[tuple[int, int]]:
    """Where ``word`` is in ``text``, overlapping ones too."""
    found = []
    at = text.find(word)
    while at >= 0:
        found.append((at, at + len(word)))
        at = text.find(word, at + 1)
    return found


#: A percent-escape, as quote() writes it (upper case).
_PERCENT = re.compile("%[0-9A-F]{2}")


@functools.lru_cache(maxsize=256)
def _spellings(secret: str) -> frozenset[str]:
    """``secret`` as written and as each quoting spells it, two deep; remembered, as the
    receiver's own secrets are looked for in every refused request's excerpt."""
    found = {secret}
    for _ in range(2):
        found |= {spelled for word in found for spelled in _quoted(word)}
    return frozenset(found)


def _quoted(word: str) -> Iterator[str]:
    for python in (repr, ascii):  # printable non-ASCII kept, or \xe9 \u20ac
        chars = [python(ch)[1:-1] for ch in word]  # quotes come out unescaped
        for delimiter in ("", "'", '"'):  # the quote escaped, as the whole string's
            yield "".join("\\" + ch if ch == delimiter else ch for ch in chars)
    for written in (json.dumps(word)[1:-1], json.dumps(word, ensure_ascii=False)[1:-1]):
        yield written
        yield written.replace("/", "\\/")  # as PHP's json_encode and Slack's JSON write a URL
    for escaped in (quote_plus(word), quote(word, safe=""), quote(word)):
        yield escaped
        yield _PERCENT.sub(lambda m: m.group().lower(), escaped)  # %2f, as some encoders write
    raw = word.encode("utf-8", "surrogatepass")
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):  # Basic auth, tokens
        text = encoded.decode("ascii")
        yield text
        yield text.rstrip("=")
