"""The dedupe store: a small state machine per delivery id.

States: absent -> in flight (a claim with a token and a lease) -> done
(kept for ``ttl``). ``mark``, ``complete`` and ``release`` carry the
claim's token, so a worker whose lease ran out cannot overwrite the claim
of the worker that took over. Handler successes are kept across a
release, so a retry runs only the handlers that have not succeeded.

Every method takes ``now`` from the receiver's clock; backends never read
the time themselves. Backend failures raise :class:`StoreUnavailable`.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os
import secrets
import types
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

ClaimState = Literal["new", "inflight", "done"]


@dataclasses.dataclass(frozen=True)
class Reply:
    """A recorded response, replayed verbatim to duplicates."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "body": base64.b64encode(self.body).decode("ascii"),
            "content_type": self.content_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Reply | None:
        if data is None:
            return None
        return cls(int(data["status"]), base64.b64decode(data["body"]), str(data["content_type"]))


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


class LogEntry(NamedTuple):
    """One line of the bounded delivery log (``flask hooks deliveries``).

    A named tuple: one is built for every delivery, and it is cheaper
    than a frozen dataclass.
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

    def to_json(self) -> str:
        """A JSON array in field order, the two times in whole microseconds.

        Once per delivery: an array costs half an object, and printing the
        shortest form of two floats cost more than all the rest of the line.
        """
        e = self
        received, duration = round(e.received_at * 1e6), round(e.duration * 1e6)
        return _compact(
            (e.id, e.type, e.status, e.code, e.reason, e.secret_index, received, duration, e.handlers)
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> LogEntry:
        *fields, received, duration, handlers = json.loads(raw)
        return cls._make([*fields, received / 1e6, duration / 1e6, tuple(handlers or ())])


class _Process:
    """Per-process state that must not survive a fork (gunicorn forks workers).

    ``generation`` changes in every forked child, so stores can drop
    connections inherited from the parent without a ``getpid`` system call
    per operation (system calls are what a delivery's time goes to in
    sandboxed hosts).
    """

    generation = 0
    token_prefix = secrets.token_hex(8)
    counter = itertools.count()

    @classmethod
    def forked(cls) -> None:
        cls.generation += 1
        cls.token_prefix = secrets.token_hex(8)
        cls.counter = itertools.count()


os.register_at_fork(after_in_child=_Process.forked)


def process_generation() -> int:
    """Changes in every forked child; compare to detect inherited resources."""
    return _Process.generation


def new_token() -> str:
    """A claim token unique across processes and machines.

    It fences claims (a worker whose lease expired cannot complete a newer
    claim) and never leaves the server, so it must be unique, not secret:
    a random prefix per process (new in every fork) and a counter.
    """
    return f"{_Process.token_prefix}.{next(_Process.counter):x}"


#: How far ahead another machine's clock may run before its leases count as stale.
CLOCK_SKEW = 1.0


def lease_is_live(lease_until: float, now: float, lease: float) -> bool:
    """Whether an in-flight claim still holds the delivery for a reader at ``now``.

    A lease that ends more than ``lease`` seconds in the reader's future
    (give or take :data:`CLOCK_SKEW`, the drift of synchronised clocks)
    was written by a machine whose clock runs ahead: nobody can hold a
    lease longer than ``lease`` from now, so it is stale, not a reason to
    answer 409 for as long as the skew lasts.
    """
    return now < lease_until <= now + lease + CLOCK_SKEW


def encode_handlers(handlers: Mapping[str, Reply | None]) -> str:
    return json.dumps({k: (v.to_json() if v else None) for k, v in handlers.items()})


def decode_handlers(raw: str | bytes | None) -> dict[str, Reply | None]:
    if not raw or raw == "{}":  # the usual case: no handler has succeeded yet
        return {}
    return {k: Reply.from_json(v) for k, v in json.loads(raw).items()}


def encode_reply(reply: Reply | None) -> str | None:
    return None if reply is None else json.dumps(reply.to_json())


def decode_reply(raw: str | bytes | None) -> Reply | None:
    return None if not raw else Reply.from_json(json.loads(raw))


class DedupeStore(ABC):
    """Abstract store; one instance may serve many receivers (``ns``)."""

    #: How many delivery-log lines to keep per receiver.
    log_size: int = 1000

    @abstractmethod
    def claim(self, ns: str, id: str, *, now: float, lease: float, ttl: float) -> Claim:
        """Take the delivery, or say who has it and whether it is done."""

    @abstractmethod
    def mark(self, ns: str, id: str, token: str, handler: str, reply: Reply | None, *, now: float) -> None:
        """Record that one handler succeeded; :class:`LeaseLost` if not ours."""

    @abstractmethod
    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        """Extend a running claim's lease to ``now + lease``; :class:`LeaseLost` if not ours.

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
        """Mark the delivery done (and log it) durably; :class:`LeaseLost` if not ours."""

    @abstractmethod
    def release(self, ns: str, id: str, token: str, *, now: float) -> None:
        """Give the claim up (a handler failed) so the sender's retry can run."""

    @abstractmethod
    def log(self, ns: str, entry: LogEntry) -> None:
        """Append to the bounded delivery log."""

    @abstractmethod
    def deliveries(self, ns: str, *, status: str | None = None, limit: int = 50) -> list[LogEntry]:
        """The newest log entries first."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to close
        """Release connections; the store may be used again afterwards."""
