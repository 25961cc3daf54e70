"""Attempt records: the delivery log's lines and a kept delivery's history."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from .errors import Retry, StoreUnavailable
from .event import Event, HeaderMap, header_pairs
from .inbox import is_credential, redacted_names
from .scrub import scrub
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
    """Type, message and traceback, at most :data:`MAX_ERROR` characters, ``secrets`` blanked.

    A handler's ``Retry`` is an answer it chose, not a failure to debug: one
    line with its reason and delay, under its public name.
    """
    if isinstance(error, Retry):
        text = f"Retry: {error.reason} (retry asked after {error.after} s)"  # of the sender, or a queue
    else:
        text = _traceback(error)
    return scrub(text, secrets)[-MAX_ERROR:]


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


#: What joins two tracebacks of a chain; the exception raised last is after the last one.
CHAINED = (
    "\nDuring handling of the above exception, another exception occurred:\n",
    "\nThe above exception was the direct cause of the following exception:\n",
)


def exception_line(error: str) -> str:
    """The line that names the exception in a kept traceback: the first one after the
    last frame of the exception raised last (its message may go on, and notes follow);
    a reason without a traceback (a handler's ``Retry``) is its own first line."""
    text = error.strip()
    for separator in CHAINED:
        text = text.rsplit(separator, 1)[-1]
    lines = text.strip().splitlines() or [""]
    if lines[0].lstrip().startswith("+ Exception Group Traceback"):  # the group's lines: "  | "
        lines = [line[4:] if line.startswith("  | ") else line for line in lines[1:]]
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    after = lines[frames[-1] + 1 :] if frames else lines
    return next((line for line in after if line and not line[0].isspace()), lines[-1])


def credentials(event: Event, provider: Any, configured: Iterable[str] = ()) -> list[str]:
    """What a handler's exception must not show of ``event``: the payload's credential
    fields (``provider.redacted_fields``) and the headers the inbox redacts
    (``Authorization``, ``Cookie``, ``provider.redacted_headers``, names that look like a
    credential's: :func:`~flask_hooks.core.inbox.is_credential`), each value whole,
    its credential after a scheme (``Bearer <token>``) and each cookie's value; and the
    receiver's ``configured`` secrets (a handler may quote its own settings)."""
    return [
        *configured,
        *field_values(event.payload, provider.redacted_fields),
        *header_credentials(event.headers, provider),
    ]


def header_credentials(headers: HeaderMap, provider: Any) -> list[str]:
    """The credentials that ``headers`` carry (see :func:`credentials`), before any event."""
    found: list[str] = []
    hidden = redacted_names(provider.redacted_headers)
    for name, value in header_pairs(headers):
        if is_credential(name, hidden):
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


def cause_line(exc: BaseException, secrets: Collection[str] = ()) -> str:
    """The error under ``exc`` on one line (``": OutOfMemoryError: ..."``), or "": for a log
    line that says what to fix (a store's full memory or disk) without the traceback. Raised
    under a handler, it may quote what the handler was given: ``secrets`` are blanked."""
    cause = exc.__cause__
    if cause is None:
        return ""
    first = scrub((str(cause).strip().splitlines() or [""])[0], secrets)[:300]
    return f": {type(cause).__name__}: {first}" if first else f": {type(cause).__name__}"
