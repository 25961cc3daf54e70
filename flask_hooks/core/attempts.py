"""Attempt records: the delivery log's lines and a kept delivery's history."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence

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
) -> LogEntry:
    """The attempt for ``event``; ``started`` is a ``perf_counter`` reading.

    ``error`` becomes the operators' text (type, message, traceback); it
    is stored, never sent to the sender.
    """
    e, duration = event, time.perf_counter() - started
    text = "".join(traceback.format_exception(error))[-MAX_ERROR:] if error is not None else ""
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


def log_quietly(store: DedupeStore, ns: str, entry: LogEntry) -> None:
    """The log is for operators; losing a line must not change the answer."""
    try:
        store.log(ns, entry)
    except StoreUnavailable:
        log.warning("delivery log unavailable for %s", ns)
