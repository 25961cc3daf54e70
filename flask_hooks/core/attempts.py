"""Attempt records: the delivery log's lines and a kept delivery's history."""

from __future__ import annotations

import bisect
import json
import logging
import time
import traceback
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

from .errors import StoreUnavailable
from .event import Event, header_pairs
from .inbox import REDACTED, redacted_names
from .store import DedupeStore, LogEntry

log = logging.getLogger("flask_hooks")

#: How much of a failure's traceback an attempt keeps.
MAX_ERROR = 8192


def log_entry(
    event: Event,
    status: str,
    code: int,
    started: float,
    ran: Sequence[str] = (),
    reason: str = "",
    *,
    error: BaseException | None = None,
    failed: str = "",
    at: float | None = None,
    secrets: Iterable[str] = (),
) -> LogEntry:
    """The attempt for ``event``; ``started`` is a ``perf_counter`` reading.

    ``error`` becomes the operators' text (type, message, traceback); it
    is stored, never sent to the sender, and ``secrets`` (the delivery's
    :func:`credentials`) are blanked in it.
    """
    e, duration = event, time.perf_counter() - started
    text = error_text(error, secrets) if error is not None else ""
    return LogEntry(
        e.id,
        e.type,
        status,
        code,
        reason,
        e.secret_index,
        e.received_at if at is None else at,
        duration,
        (*ran,),
        text,
        failed,
    )


def error_text(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """Type, message and traceback, at most :data:`MAX_ERROR` characters, ``secrets`` blanked."""
    return scrub(_traceback(error), secrets)[-MAX_ERROR:]


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def credentials(event: Event, provider: Any, configured: Iterable[str] = ()) -> list[str]:
    """What a handler's exception must not show of ``event``: the payload's credential
    fields (``provider.redacted_fields``) and the headers the inbox redacts
    (``Authorization``, ``Cookie``, ``provider.redacted_headers``), each value whole,
    its credential after a scheme (``Bearer <token>``) and each cookie's value; and the
    receiver's ``configured`` secrets (a handler may quote its own settings)."""
    found = [*configured, *field_values(event.payload, provider.redacted_fields)]
    hidden = redacted_names(provider.redacted_headers)
    for name, value in header_pairs(event.headers):
        if name.lower() in hidden:
            found += _header_secrets(name.lower(), value.strip())
    return found


def _header_secrets(name: str, value: str) -> list[str]:
    if name == "cookie":
        parts = [pair.partition("=")[2].strip() for pair in value.split(";")]
    else:
        parts = [value.partition(" ")[2].strip()]
    return [text for text in (value, *parts) if text]


def field_values(payload: Any, names: Collection[str]) -> list[str]:
    """The text values of the fields ``names`` at any depth of ``payload`` (a credential's)."""
    found: list[str] = []
    if not names:
        return found
    nodes = [payload]
    while nodes:
        node = nodes.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in names and isinstance(value, str) and value:
                    found.append(value)
                else:
                    nodes.append(value)
        elif isinstance(node, list):
            nodes.extend(node)
    return found


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


def _spellings(secret: str) -> set[str]:
    """``secret`` as written and as each quoting spells it, two deep."""
    found = {secret}
    for _ in range(2):
        found |= {spelled for word in found for spelled in _quoted(word)}
    return found


def _quoted(word: str) -> Iterator[str]:
    for python in (repr, ascii):  # printable non-ASCII kept, or \xe9 \u20ac
        chars = [python(ch)[1:-1] for ch in word]  # quotes come out unescaped
        for delimiter in ("", "'", '"'):  # the quote escaped, as the whole string's
            yield "".join("\\" + ch if ch == delimiter else ch for ch in chars)
    yield json.dumps(word)[1:-1]
    yield json.dumps(word, ensure_ascii=False)[1:-1]
    yield quote_plus(word)
    yield quote(word, safe="")
    yield quote(word)


def log_failure(message: str, error: BaseException, secrets: Collection[str]) -> None:
    """Log a handler's exception with its traceback; blanked, without ``exc_info``, when it
    quotes one of ``secrets`` (the delivery's :func:`credentials`)."""
    blanked = blanked_traceback(error, secrets)
    if blanked is not None:
        log.error("%s\n%s", message, blanked.rstrip())
    else:
        log.error("%s", message, exc_info=error)


def blanked_traceback(error: BaseException, secrets: Collection[str]) -> str | None:
    """The traceback of ``error`` with ``secrets`` blanked, or None when it quotes none."""
    full = _traceback(error) if secrets else ""
    blanked = scrub(full, secrets)
    return None if blanked == full else blanked


def log_quietly(store: DedupeStore, ns: str, entry: LogEntry) -> None:
    """The log is for operators; losing a line must not change the answer."""
    try:
        store.log(ns, entry)
    except StoreUnavailable:
        log.warning("delivery log unavailable for %s", ns)
