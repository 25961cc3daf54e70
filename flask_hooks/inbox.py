"""The delivery inbox: see what came in, why it failed, and replay it after a fix.

``hooks.inbox(app)`` reads the receiver's store: every verified delivery
is kept with its exact body, its headers (credentials redacted) and every
attempt, for ``HOOKS_RETENTION``. A replay goes through the same claim and
lease as a sender's retry, so the two never run a handler twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from flask import Flask, current_app, has_app_context

from .core.attempts import field_values
from .core.deferral import handler_key, handler_namespace, worker_lease
from .core.durations import is_seconds, shown, time_bound
from .core.errors import InFlight, LeaseLost, StoreUnavailable
from .core.inbox import (
    STATUSES,
    Stored,
    is_credential,
    is_text,
    mask_fields,
    payload_of,
    redacted_names,
)
from .core.scrub import REDACTED, scrub
from .core.store import LogEntry
from .handler_reply import run
from .replay_request import as_received
from .view import _notify

if TYPE_CHECKING:
    from .extension import Receiver

T = TypeVar("T")

log = logging.getLogger("flask_hooks")

#: The largest limit, and age to purge, the inbox passes a store: more than any holds,
#: within SQLite's 64-bit integers (``now - 10**400`` overflows a float).
_MOST = 2**62

#: What masked values read as wherever a delivery is shown.
MASK = REDACTED

#: A replay's outcome word as the delivery status it leaves.
_STATUS_OF = {"received": "received", "ignored": "ignored", "in-flight": "in-flight"}


class Attempt(NamedTuple):
    """One attempt at a delivery: the sender's, a duplicate's, or a replay."""

    at: float
    outcome: str
    code: int
    duration: float
    handlers: tuple[str, ...]
    #: Exception type, message and traceback, for operators only.
    error: str
    #: The handler that failed, if one did.
    failed: str = ""

    @classmethod
    def from_entry(cls, entry: LogEntry, secrets: Collection[str] = ()) -> Attempt:
        """The attempt as shown, ``secrets`` blanked in its error (kept before they were)."""
        return cls(
            entry.received_at,
            entry.status,
            entry.code,
            entry.duration,
            entry.handlers,
            scrub(entry.error, secrets) if secrets and entry.error else entry.error,
            entry.failed,
        )


_TAKEN_OVER = (
    "the replay's claim ran out while its handlers ran, and a sender's retry took the delivery"
    " over: they may have run twice; check their effects before replaying again (an atomic"
    " handler's database writes were rolled back)"
)


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A kept delivery, as the inbox shows it."""

    id: str
    type: str
    status: str
    #: As received; never in the repr (it may hold credentials): see :meth:`shown_payload`.
    body: bytes = dataclasses.field(repr=False)
    headers: tuple[tuple[str, str], ...]
    received_at: float
    secret_index: int | None
    #: Handler name -> ``succeeded``, ``failed`` or ``pending``.
    handlers: Mapping[str, str]
    attempts: tuple[Attempt, ...]
    receiver: str
    #: Body fields the provider declares as credentials, masked by :meth:`shown_payload`.
    masked: tuple[str, ...] = ()
    #: Deferred handlers handed to their queue and not run by a worker yet (``pending``): a
    #: plain replay leaves them to their job; one that names them hands them over again.
    queued: tuple[str, ...] = ()
    #: The provider's ``parse`` (``Provider.parse``), which reads a body that is not JSON (a form post).
    parse: Callable[..., Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def payload(self) -> Any:
        """The body parsed as JSON, or a form post as the provider reads it (:attr:`form`);
        None when neither reads it. Parsed once: a page reads it several times."""
        # Not functools.cached_property: before Python 3.12 one lock serves every instance,
        # so one slow parse would hold up every other page's.
        if "_payload" not in self.__dict__:
            object.__setattr__(self, "_payload", payload_of(self.body, self.headers, self.parse))
        return self.__dict__["_payload"]

    @property
    def form(self) -> Any:
        """The payload of a body that is not JSON, as the provider reads it: a Slack
        command's fields, the JSON in a ``payload`` field (Slack's interactions,
        GitHub's form content type). None for a JSON body."""
        try:
            json.loads(self.body)
        except ValueError:
            return self.payload
        return None

    def shown_payload(self, secrets: Collection[str] = ()) -> Any:
        """The payload with the provider's credential fields masked, for pages and the CLI,
        and each of ``secrets`` (:func:`hidden`) blanked wherever else it is quoted."""
        return blank(mask(self.payload, self.masked), secrets)

    @property
    def owed(self) -> bool:
        """Whether a replay of some handlers ran them and others are still owed: the
        delivery stays failed, but that replay did not fail (its attempt is ``replayed``)."""
        return self.status == "failed" and bool(self.attempts) and self.attempts[-1].outcome == "replayed"

    @property
    def last_error(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.error), None)


def mask(payload: Any, fields: Collection[str]) -> Any:
    """``payload`` with every key in ``fields`` (at any depth) replaced by :data:`MASK`."""
    return mask_fields(payload, fields) if fields else payload


def hidden(delivery: Delivery, secrets: Collection[str]) -> list[str]:
    """What no view of ``delivery`` may show: ``secrets`` (its receiver's) and the
    values of its body's credential fields, wherever else the body quotes them."""
    # The body is parsed only when the provider declares credential fields in it.
    return [*secrets, *field_values(delivery.payload, delivery.masked)] if delivery.masked else [*secrets]


def shown_header(name: str, value: str, names: Collection[str], secrets: Collection[str]) -> str:
    """A kept header as shown: masked when its name is a credential's, though it was
    kept (by a version that redacted fewer names, or before the provider named it)."""
    return MASK if is_credential(name, names) else scrub(value, secrets)


def blank(payload: Any, secrets: Collection[str]) -> Any:
    """``payload`` with every key, string or number that quotes one of ``secrets`` blanked.

    A body may carry a credential under a name no provider declares (a sender
    echoing its own configuration). One compact dump tells whether any is
    there, so a body without one is not walked.
    """
    if not secrets:
        return payload
    text = json.dumps(payload, ensure_ascii=False)
    if scrub(text, secrets) == text:
        return payload
    try:
        return _blanked(payload, secrets)
    except RecursionError:  # nested too deep to walk: show none of it
        return MASK


def _blanked(value: Any, secrets: Collection[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): _blanked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_blanked(v, secrets) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return MASK if scrub(str(value), secrets) != str(value) else value
    return value


class Inbox:
    """One receiver's kept deliveries on one app."""

    def __init__(self, receiver: Receiver, app: Flask) -> None:
        self.receiver = receiver
        self.app = app

    def _delivery(self, stored: Stored) -> Delivery:
        routes = self.receiver.hooks.router.match(stored.type)
        masked, parse = self.receiver.provider.redacted_fields, self.receiver.provider.parse
        # Blanked in tracebacks and headers. The body's own credential values only where an
        # attempt kept an error that may quote them: parsing each body of a list page (large
        # Slack interactions) made it take seconds. Parsed then, the payload is the one the
        # delivery shows (seeded below), not parsed again.
        erred = bool(masked) and any(a.error for a in stored.attempts)
        payload = payload_of(stored.body, stored.headers, parse) if erred else None
        secrets = [*self.receiver.secrets, *field_values(payload, masked)] if erred else self.receiver.secrets
        names = redacted_names(self.receiver.provider.redacted_headers)
        status = stored.status_at(self.receiver.now())
        failed = next((a.failed for a in reversed(stored.attempts) if a.failed), "")
        states, queued, completed = {}, [], status in ("received", "ignored")
        # A deferred handler's mark, and the completion, say only that its job was enqueued: it
        # succeeded once an attempt says it ran (its worker's; a run of the days it was not
        # deferred), and a job the broker lost never does.
        ran = {name for a in stored.attempts for name in a.handlers}
        for route in routes:
            failing = status == "failed" and route.name == failed
            if route.defer is None:
                # A completion is every handler's success (the last one gets no mark of its own).
                done = completed or route.name in stored.handlers
            else:
                done = route.name in ran and not failing  # a re-run that failed for good since
            if done:
                states[route.name] = "succeeded"
            elif failing:
                states[route.name] = "failed"
            else:
                states[route.name] = "pending"
                if route.defer is not None and (completed or route.name in stored.handlers):
                    queued.append(route.name)  # handed to its queue, not run yet
        delivery = Delivery(
            id=stored.id,
            type=stored.type,
            status=status,
            body=stored.body,
            headers=tuple((k, shown_header(k, v, names, secrets)) for k, v in stored.headers),
            received_at=stored.received_at,
            secret_index=stored.secret_index,
            handlers=states,
            attempts=tuple(Attempt.from_entry(a, secrets) for a in stored.attempts),
            receiver=self.receiver.name,
            masked=masked,
            parse=parse,
            queued=tuple(queued),
        )
        if erred:
            object.__setattr__(delivery, "_payload", payload)  # Delivery.payload's own cache
        return delivery

    def _stored(self, id: str) -> Stored | None:
        """What the store keeps under ``id`` while its retention lasts, or None.

        An id that is not text UTF-8 can encode (a lone surrogate) was
        refused at receipt, so nothing is kept under it.
        """
        if not is_text(id):
            return None
        stored = self._in_app(lambda: self.receiver.store.get(self.receiver.ns, id))
        if stored is None or not stored.kept_at(self.receiver.now()):
            return None  # past its retention: gone, though the purge may not have run yet
        return stored

    def get(self, id: str) -> Delivery | None:
        """The delivery kept under ``id``, or None."""
        stored = self._stored(id)
        return None if stored is None else self._delivery(stored)

    def query(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Kept deliveries, newest first; ``type`` is a routing pattern (``payment.*``).

        ``before`` is ``(received_at, id)`` of the last delivery of the
        previous page.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive whole number, not {shown(limit)}")
        limit = min(limit, _MOST)  # what a store's integers hold (SQLite's: 64 bits)
        since, until = time_bound("since", since), time_bound("until", until)
        if before is not None:
            before = (time_bound("before", before[0]), before[1])
        if (type is not None and not is_text(type)) or (before is not None and not is_text(before[1])):
            return []  # nothing was kept under a type or id no store could write
        now = self.receiver.now()
        rows = self._in_app(
            lambda: self.receiver.store.query(
                self.receiver.ns,
                now=now,
                status=status,
                type=type,
                since=since,
                until=until,
                before=before,
                limit=limit,
            )
        )
        return [self._delivery(row) for row in rows if row.kept_at(now)]

    def replay(self, id: str, *, handlers: Collection[str] | None = None) -> Delivery:
        """Run the handlers of ``id`` that have not succeeded (or exactly ``handlers``).

        Returns the delivery as it is afterwards (``status`` tells how it went).
        Raises :class:`LookupError` for an unknown id and
        :class:`~flask_hooks.InFlight` while the delivery is claimed (nothing ran), and
        its subclass :class:`~flask_hooks.LeaseLost` when the replay lost its claim
        mid-handler (frozen past its lease, a retry took it over: its handlers ran).
        """
        stored = self._stored(id)
        if stored is None:
            raise LookupError(f"no delivery {id!r} is kept by receiver {self.receiver.name!r}")
        with as_received(self.app, self.receiver, stored):
            outcome = self.receiver.pipeline.replay(stored, run=run, notify=_notify, handlers=handlers)
        if outcome.kind == "unavailable" and outcome.error is not None:
            raise outcome.error
        if outcome.kind == "in-flight":  # its lease ran out mid-handler: a retry took it over
            raise LeaseLost(_TAKEN_OVER)
        try:
            after = self.get(id)
        except StoreUnavailable:  # replayed, but the store went away before we could read it back
            after = None
        if after is None:
            return dataclasses.replace(self._delivery(stored), status=_STATUS_OF.get(outcome.kind, "failed"))
        return after

    def forget(self, id: str) -> bool:
        """Remove the delivery: the sender's next redelivery is processed afresh.

        The workers' records of its deferred handlers go too: they would make
        the redelivery's jobs duplicates of the first ones; one that a worker
        holds stays (logged), so the redelivery's job waits for that run and
        counts it. Raises :class:`~flask_hooks.InFlight`, forgetting nothing,
        while a request or a replay holds the delivery: the sender's retry
        would run its handlers a second time.
        """
        if not is_text(id):
            return False
        receiver = self.receiver
        store, ns, lease = receiver.store, receiver.ns, receiver.settings.lease
        routes = receiver.hooks.router.routes
        deferred = {r.name: worker_lease(r.defer, lease) for r in routes if r.defer is not None}

        def forget() -> bool:
            removed = store.forget(ns, id, now=receiver.now(), lease=lease)
            for name, held in deferred.items():
                key, now = handler_key(id, name), receiver.now()
                try:
                    removed = store.forget(handler_namespace(ns), key, now=now, lease=held) or removed
                except InFlight:
                    log.warning("forgot %s %s but not %s, which a worker runs", receiver.name, id, name)
            return removed

        return self._in_app(forget)

    def purge(self, *, older_than: float) -> int:
        """Remove deliveries received more than ``older_than`` seconds ago; how many."""
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)):
            # "30d" is the CLI's spelling: say so, rather than fail comparing a str.
            raise TypeError(f"older_than is a number of seconds (30 days: 30 * 86400), not {older_than!r}")
        if not (is_seconds(older_than) and older_than >= 0):
            raise ValueError(f"older_than must be a number of seconds, 0 or more, not {shown(older_than)}")
        now = self.receiver.now()
        older_than = min(older_than, _MOST)  # now - 10**400 overflows
        total = 0
        store, ns = self.receiver.store, self.receiver.ns
        while removed := self._in_app(lambda: store.purge(ns, now=now, received_before=now - older_than)):
            total += removed
        return total

    def _in_app(self, work: Callable[[], T]) -> T:
        """``work()`` in this inbox's app: a store may read the current app (``SqlStore(db)``
        uses its ``db.engine``), and so does a replay's handler."""
        if has_app_context() and current_app._get_current_object() is self.app:  # type: ignore[attr-defined]
            return work()
        with self.app.app_context():
            return work()
