"""Attempt records: the delivery log's lines and a kept delivery's history."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from .errors import StoreUnavailable
from .event import Event
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
    masked: Collection[str] = (),
) -> LogEntry:
    """The attempt for ``event``; ``started`` is a ``perf_counter`` reading.

    ``error`` becomes the operators' text (type, message, traceback); it
    is stored, never sent to the sender, and the values of the payload's
    ``masked`` fields (credentials) are blanked in it.
    """
    e, duration = event, time.perf_counter() - started
    text = error_text(error, field_values(e.payload, masked)) if error is not None else ""
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
    return scrub("".join(traceback.format_exception(error)), secrets)[-MAX_ERROR:]


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
    """``text`` with each of ``secrets`` (longest first) replaced by ``[redacted]``.

    A handler's exception may quote what it was given (``KeyError(payload["secret"])``,
    a validation error echoing its input): its message must not carry the credential.
    """
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def log_quietly(store: DedupeStore, ns: str, entry: LogEntry) -> None:
    """The log is for operators; losing a line must not change the answer."""
    try:
        store.log(ns, entry)
    except StoreUnavailable:
        log.warning("delivery log unavailable for %s", ns)
