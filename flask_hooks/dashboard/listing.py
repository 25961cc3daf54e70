"""The list page's data: every receiver's deliveries merged, newest first, keyset paged.

Each receiver's inbox is asked for one page (``limit + 1`` rows) before
the cursor, so a page costs the same with a thousand kept deliveries or a
million on a store that indexes ``(received_at, id)``. The merged order
is ``(received_at, id, receiver)`` descending; the cursor is the last
row's triple, so two receivers holding the same id at the same instant
are both shown, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from flask import Flask

from ..core.errors import RecordUnreadable, StoreUnavailable
from ..core.inbox import STATUSES, type_matches
from ..extension import Receiver
from ..inbox import Delivery
from ..stores import DedupeStore

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class BadQuery(ValueError):
    """A filter or cursor in the query string that cannot be used (400)."""


class Filters(NamedTuple):
    receiver: str | None = None
    status: str | None = None
    type: str | None = None
    id: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str], receivers: Mapping[str, Receiver]) -> Filters:
        def arg(name: str, *, exact: bool = False) -> str | None:
            value = args.get(name, "")
            return (value if exact else value.strip()) or None

        receiver, status = arg("receiver"), arg("status")
        if receiver is not None and receiver not in receivers:
            raise BadQuery("no such receiver")  # not repeated: a link must not choose the page's words
        if status is not None and status not in STATUSES:
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
        return cls(receiver, status, arg("type"), arg("id", exact=True))  # ids may hold blanks

    def args(self) -> dict[str, str]:
        """The filters as query-string arguments (for the next page's link)."""
        return {k: v for k, v in self._asdict().items() if v is not None}

    def matches(self, d: Delivery) -> bool:
        return (self.status is None or d.status == self.status) and type_matches(self.type, d.type)


class Cursor(NamedTuple):
    """The last row of a page: the next page starts below it."""

    received_at: float
    id: str
    receiver: str

    def args(self) -> dict[str, str]:
        return {"before": repr(self.received_at), "before_id": self.id, "before_receiver": self.receiver}

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Cursor | None:
        raw = args.get("before")
        if not raw:
            return None
        try:
            when = float(raw)
        except ValueError:
            raise BadQuery("'before' must be a time") from None
        if not math.isfinite(when):
            raise BadQuery("'before' must be a time")
        return cls(when, args.get("before_id", ""), args.get("before_receiver", ""))


class Row(NamedTuple):
    receiver: str
    delivery: Delivery

    @property
    def key(self) -> tuple[float, str, str]:
        return (self.delivery.received_at, self.delivery.id, self.receiver)

    @property
    def duration(self) -> float | None:
        """The newest attempt's duration, in seconds."""
        attempts = self.delivery.attempts
        return attempts[-1].duration if attempts else None

    @property
    def failed_handler(self) -> str:
        failed = [name for name, state in self.delivery.handlers.items() if state == "failed"]
        if failed:
            return ", ".join(failed)
        last = self.delivery.last_error
        return last.failed if last is not None and self.delivery.status == "failed" else ""


class Page(NamedTuple):
    rows: list[Row]
    #: The cursor of the next (older) page, or None on the last one.
    next: Cursor | None
    #: Receivers whose store did not answer, or held a record it could not read.
    unavailable: list[str]
    #: The stores that did not answer.
    down: list[DedupeStore]


def page_size(args: Mapping[str, str]) -> int:
    raw = args.get("limit", "")
    if not raw:
        return PAGE_SIZE
    try:
        return max(1, min(MAX_PAGE_SIZE, int(raw)))
    except ValueError:
        raise BadQuery("'limit' must be a number") from None


def is_down(store: object, down: Iterable[object]) -> bool:
    """Whether ``store`` is one that did not answer for this page.

    Receivers that share a store URL share the store: one that hangs is
    waited for once a page (its timeout), not once per receiver and section.
    """
    return any(store is each for each in down)


def note_down(exc: StoreUnavailable, store: DedupeStore, down: list[DedupeStore]) -> None:
    """Add ``store`` to the page's stores that did not answer, unless it did and only one
    record of it could not be read (:class:`RecordUnreadable`)."""
    if not isinstance(exc, RecordUnreadable):
        down.append(store)


def page(
    app: Flask,
    receivers: Sequence[Receiver],
    filters: Filters,
    before: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of deliveries, newest first, across ``receivers``."""
    chosen = [r for r in receivers if filters.receiver in (None, r.name)]
    rows: list[Row] = []
    unavailable: list[str] = []
    down: list[DedupeStore] = []
    for receiver in chosen:
        if is_down(receiver.store, down):
            unavailable.append(receiver.name)
            continue
        inbox = receiver.hooks.inbox(app)
        try:
            if filters.id is not None:
                found = inbox.get(filters.id)
                if found is not None and filters.matches(found):
                    rows.append(Row(receiver.name, found))
                continue
            key = None if before is None else (before.received_at, before.id)
            got = inbox.query(status=filters.status, type=filters.type, before=key, limit=limit + 1)
            rows.extend(Row(receiver.name, d) for d in got)
            if before is not None and receiver.name < before.receiver:
                # The same (received_at, id) in a receiver that sorts below the cursor's.
                tie = inbox.get(before.id)
                if tie is not None and tie.received_at == before.received_at and filters.matches(tie):
                    rows.append(Row(receiver.name, tie))
        except StoreUnavailable as exc:
            unavailable.append(receiver.name)
            note_down(exc, receiver.store, down)
    rows.sort(key=lambda row: row.key, reverse=True)
    if before is not None:
        rows = [row for row in rows if row.key < tuple(before)]
    shown = rows[:limit]
    more = len(rows) > limit
    last = shown[-1] if shown else None
    cursor = Cursor(*last.key) if more and last is not None else None
    return Page(shown, cursor, unavailable, down)
