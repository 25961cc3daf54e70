"""The dedupe store's protocol and records, without I/O.

States per delivery id: absent -> in flight (a claim with a token and a
lease) -> done (kept for ``ttl``). ``mark``, ``renew``, ``complete`` and
``release`` carry the claim's token, so a worker whose lease ran out
cannot overwrite the claim of the worker that took over. Handler
successes are kept across a release, so a retry runs only the handlers
that have not succeeded.

Every method takes ``now`` from the receiver's clock; backends never read
the time themselves. Backend failures raise :class:`StoreUnavailable`.
The backends live in :mod:`flask_hooks.stores`; the pipeline knows only
this protocol.

Persisted records (replies, handler marks, log lines) are JSON objects
with a format version ``v``, read by field name, so a field added later
leaves older rows readable; rows written before versions existed (log
lines as positional arrays) are still read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .errors import RecordUnreadable

if TYPE_CHECKING:
    from .inbox import Kept, Stored

log = logging.getLogger("flask_hooks")

ClaimState = Literal["new", "inflight", "done"]

#: The version written into every persisted record.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Reply:
    """A recorded response, replayed verbatim to duplicates.

    ``headers`` are the handler's own (``X-Slack-No-Retry``, ``Retry-After``),
    those ``flask_hooks.core.replies.reply_headers`` keeps; the
    Content-Type is ``content_type``.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "status": self.status,
            "body": base64.b64encode(self.body).decode("ascii"),
            "content_type": self.content_type,
        }
        if self.headers:  # added in 0.2 (a reader that predates it ignores it)
            data["headers"] = [list(pair) for pair in self.headers]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Reply | None:
        """Read any version: fields by name, with defaults for those added later."""
        if data is None:
            return None
        content_type = str(data.get("content_type", "application/json"))
        headers = tuple((str(name), str(value)) for name, value in data.get("headers") or ())
        return cls(int(data["status"]), base64.b64decode(data.get("body", "")), content_type, headers)


_NO_HANDLERS: Mapping[str, Reply | None] = types.MappingProxyType({})


class Claim(NamedTuple):
    """The answer to ``claim`` (a named tuple: one per delivery).

    ``new``: this caller owns the delivery (``token``); ``handlers`` lists
    the handlers an earlier attempt already completed, with their replies.
    ``inflight``: another caller owns it for ``retry_after`` more seconds.
    ``done``: completed earlier with ``outcome`` and the recorded ``reply``.
    """

    state: ClaimState
    token: str = ""
    handlers: Mapping[str, Reply | None] = _NO_HANDLERS
    reply: Reply | None = None
    outcome: str = ""
    retry_after: float = 0.0


#: ``json.dumps(value, separators=(",", ":"))`` with the encoder built once, not per call.
_compact = json.JSONEncoder(separators=(",", ":")).encode


#: ``LogEntry`` fields in the order of the unversioned positional arrays of 0.1.0.
_V0_FIELDS = (
    "id",
    "type",
    "status",
    "code",
    "reason",
    "secret_index",
    "received_us",
    "duration_us",
    "handlers",
)


class LogEntry(NamedTuple):
    """One attempt: a line of the bounded delivery log, and of a delivery's attempts.

    ``error`` is for operators (exception type, message and traceback),
    never sent to the sender; ``failed`` names the handler that failed;
    ``excerpt`` is a refused request's escaped beginning.
    """

    id: str | None
    type: str | None
    status: str
    code: int
    reason: str = ""
    secret_index: int | None = None
    received_at: float = 0.0
    duration: float = 0.0
    handlers: tuple[str, ...] = ()
    error: str = ""
    failed: str = ""
    excerpt: str = ""

    def to_json(self) -> str:
        """A versioned JSON object; the two times in whole microseconds."""
        e = self
        data: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "id": e.id,
            "type": e.type,
            "status": e.status,
            "code": e.code,
            "reason": e.reason,
            "secret_index": e.secret_index,
            "received_us": round(e.received_at * 1e6),
            "duration_us": round(e.duration * 1e6),
            "handlers": e.handlers,
        }
        for optional in ("error", "failed", "excerpt"):  # usually empty: not written
            if getattr(e, optional):
                data[optional] = getattr(e, optional)
        return _compact(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> LogEntry:
        """Read a line of any version; fields it does not know are ignored. A line that
        is not one (damaged, or of a newer kind) is :func:`unreadable`, not a 500."""
        try:
            return cls.from_data(json.loads(raw))
        except UNREADABLE as exc:
            raise unreadable("log line", exc) from exc

    @classmethod
    def from_data(cls, data: Any) -> LogEntry:
        """A line already parsed (an attempt inside a kept delivery's attempts record)."""
        if isinstance(data, list):  # 0.1.0 wrote positional arrays
            data = dict(zip(_V0_FIELDS, data, strict=False))
        return cls(
            id=data.get("id"),
            type=data.get("type"),
            status=str(data.get("status", "")),
            code=int(data.get("code", 0)),
            reason=str(data.get("reason") or ""),
            secret_index=data.get("secret_index"),
            received_at=data.get("received_us", 0) / 1e6,
            duration=data.get("duration_us", 0) / 1e6,
            handlers=tuple(data.get("handlers") or ()),
            error=str(data.get("error") or ""),
            failed=str(data.get("failed") or ""),
            excerpt=str(data.get("excerpt") or ""),
        )


#: How far ahead another machine's clock may run before its leases count as stale.
CLOCK_SKEW = 1.0


def lease_is_live(lease_until: float, now: float, lease: float, skew: float = CLOCK_SKEW) -> bool:
    """Whether an in-flight claim still holds the delivery for a reader at ``now``.

    A lease that ends more than ``lease`` seconds in the reader's future
    (give or take ``skew``: the drift of synchronised clocks, and for Redis
    the delay of a command its client sends again) was written by a machine
    whose clock runs ahead: nobody can hold a lease longer than ``lease``
    from now, so it is stale, not a reason to answer 409 for as long as the
    skew lasts.
    """
    return now < lease_until <= now + lease + skew


def encode_handlers(handlers: Mapping[str, Reply | None]) -> str:
    """Handler marks: ``{"v": 1, "handlers": {name: reply or null}}``."""
    marks = {k: (v.to_json() if v else None) for k, v in handlers.items()}
    return json.dumps({"v": FORMAT_VERSION, "handlers": marks})


def decode_handlers(raw: str | bytes | None) -> dict[str, Reply | None]:
    if not raw or raw == "{}":  # the usual case: no handler has succeeded yet
        return {}
    try:
        data = json.loads(raw)
        # 0.1.0 stored the bare mapping; a handler named "v" maps to a reply or null, never a number.
        marks = data.get("handlers", {}) if isinstance(data.get("v"), int) else data
        return {k: Reply.from_json(v) for k, v in marks.items()}
    except UNREADABLE as exc:
        raise unreadable("handler marks", exc) from exc


def encode_reply(reply: Reply | None) -> str | None:
    return None if reply is None else json.dumps(reply.to_json())


def decode_reply(raw: str | bytes | None) -> Reply | None:
    try:
        return None if not raw else Reply.from_json(json.loads(raw))
    except UNREADABLE as exc:
        raise unreadable("reply", exc) from exc


#: What reading a record that is not in a format this version writes raises.
UNREADABLE = (ValueError, TypeError, KeyError, AttributeError)


def unreadable(what: str, exc: Exception) -> RecordUnreadable:
    """The store is unavailable: a record of it cannot be read. Logged as an error, since
    retrying does not help: the sender's retries of that delivery get 503 until it is fixed."""
    log.error(
        "the stored %s of a delivery cannot be read (the record is damaged, or a newer"
        " version of flask-webhooks wrote it): %r; answering 503 for its delivery",
        what,
        exc,
    )
    return RecordUnreadable()


class DedupeStore(ABC):
    """Abstract store; one instance may serve many receivers (``ns``)."""

    #: How many delivery-log lines to keep per receiver.
    log_size: int = 1000

    @abstractmethod
    def claim(
        self, ns: str, id: str, *, now: float, lease: float, ttl: float, keep: Kept | None = None
    ) -> Claim:
        """Take the delivery, or say who has it and whether it is done.

        ``keep`` is the delivery for the inbox, stored in the same
        transaction when the claim is new (a retry keeps the first copy).
        The record then lasts ``keep.retention`` at least, while it counts
        as a duplicate for ``ttl`` only.
        """

    @abstractmethod
    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        """Record that one handler succeeded; :class:`~flask_hooks.LeaseLost` if not ours."""

    @abstractmethod
    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        """Extend a running claim's lease to ``now + lease``; :class:`~flask_hooks.LeaseLost` if not ours.

        Called only for handlers that run for a good part of their lease,
        so a slow handler is not taken over (and run twice) while it runs.
        """

    @abstractmethod
    def complete(
        self,
        ns: str,
        id: str,
        token: str,
        *,
        outcome: str,
        reply: Reply | None,
        now: float,
        ttl: float,
        entry: LogEntry | None = None,
    ) -> None:
        """Mark the delivery done (and log it) durably; :class:`~flask_hooks.LeaseLost` if not ours."""

    @abstractmethod
    def release(self, ns: str, id: str, token: str, *, now: float, entry: LogEntry | None = None) -> None:
        """Give the claim up (a handler failed) so the sender's retry can run; log ``entry``."""

    #: Whether :meth:`atomic` runs handlers inside the store's own transaction.
    supports_atomic: bool = False

    def atomic(
        self, ns: str, id: str, token: str, handler: str, run: Callable[[], Reply | None], *, now: float
    ) -> Reply | None:
        """Run ``run`` inside the transaction that marks ``handler`` done, fenced by ``token``.

        Only stores whose records live in the app's own database can
        (:class:`~flask_hooks.stores.sql.SqlStore`); ``init_app`` refuses
        ``atomic=True`` handlers on the others.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot run handlers atomically")

    @abstractmethod
    def log(self, ns: str, entry: LogEntry) -> None:
        """Append to the bounded delivery log, and to the kept delivery's attempts."""

    @abstractmethod
    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        """The newest log entries first."""

    # The inbox ------------------------------------------------------------------

    @abstractmethod
    def get(self, ns: str, id: str) -> Stored | None:
        """The kept delivery, or None."""

    @abstractmethod
    def query(
        self,
        ns: str,
        *,
        now: float,
        status: str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[Stored]:
        """Kept deliveries, newest first (``received_at``, then id, descending).

        ``status`` is a status of :class:`~flask_hooks.inbox.Delivery`
        (``received``, ``ignored``, ``failed`` or ``in-flight``) as of ``now``
        (an in-flight claim whose lease ran out is ``failed``);
        ``type`` a routing pattern; ``before`` the ``(received_at, id)`` of
        the last row of the previous page (keyset paging).
        """

    @abstractmethod
    def reopen(
        self,
        ns: str,
        id: str,
        *,
        now: float,
        lease: float,
        rerun: Collection[str] = (),
        keep: Collection[str] = (),
    ) -> Claim:
        """Claim a kept delivery for a replay, in one step with reading its state.

        A completed delivery with nothing to ``rerun`` is left alone:
        ``done``, with its reply and outcome. Otherwise the marks of
        ``rerun`` are dropped, so those handlers run again, and the claim is
        ``new``; for a delivery that was completed, it carries the recorded
        ``reply`` and ``outcome`` (every handler but those of ``rerun``
        succeeded), which a replay decides on: a snapshot read before could
        be stale, a sender's retry may have completed it since. For a
        completed delivery, each handler of ``keep`` (those not re-run) gets
        a mark where it has none (the last one's record was the completion),
        so a re-run that fails leaves them done.
        ``inflight`` while someone holds it; :class:`LookupError` when
        nothing is kept under ``id``.
        """

    @abstractmethod
    def forget(self, ns: str, id: str, *, now: float, lease: float) -> bool:
        """Remove the delivery (record, marks, kept copy); whether there was one.

        Raises :class:`~flask_hooks.core.errors.InFlight` while a live claim
        holds it (as :meth:`reopen` sees one): the handler running then
        would run again on the sender's retry.
        """

    @abstractmethod
    def purge(self, ns: str, *, now: float, received_before: float | None = None, limit: int = 500) -> int:
        """Remove up to ``limit`` records past their retention (or received before
        ``received_before``), never one in flight; the number removed."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release connections; the store may be used again afterwards."""
