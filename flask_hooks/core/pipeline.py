"""One delivery, start to finish, without Flask.

verify -> parse -> claim -> run the pending handlers -> complete -> answer.
The transport passes headers and the exact body bytes in, a ``run``
callable that invokes one handler (and renders its return value), and a
``notify`` callable for signals. It gets an :class:`Outcome` back and
maps it to a response in one place.

Nothing is acknowledged before ``complete`` has durably stored the
outcome; a failing handler releases the claim so the sender's retry runs
it again, and handlers that already succeeded are not run twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .answer import Outcome, answer
from .clock import Clock
from .deferral import hand_over
from .errors import (
    BodyTooLarge,
    HookError,
    InFlight,
    LeaseLost,
    PayloadError,
    QueueUnavailable,
    Retry,
    StoreUnavailable,
    VerificationError,
)
from .event import Event, Headers
from .providers.base import Provider, Tolerance
from .routing import Route, Router
from .store import DedupeStore, LogEntry, Reply

log = logging.getLogger("flask_hooks")

Run = Callable[[Route, Event], "Reply | None"]
Notify = Callable[..., None]

#: A handler's reply larger than this is not stored (every duplicate would get
#: it again): the delivery is answered with the default body instead.
MAX_REPLY = 64 * 1024


class Leases(Protocol):
    """Keeps the claims of running handlers alive (``flask_hooks.stores.leases``)."""

    def hold(
        self, store: DedupeStore, ns: str, id: str, token: str, *, lease: float, clock: Clock
    ) -> object: ...

    def drop(self, held: Any) -> None: ...


class NoLeases:
    """Renews nothing: a claim lasts its lease (for pipelines used without a keeper)."""

    def hold(self, store: DedupeStore, ns: str, id: str, token: str, *, lease: float, clock: Clock) -> object:
        return None

    def drop(self, held: Any) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class ReceiverConfig:
    """Everything the pipeline needs about one receiver, resolved once."""

    name: str
    provider: Provider
    keys: tuple[bytes, ...]
    store: DedupeStore
    router: Router
    dedupe_ttl: float
    lease: float
    tolerance: Tolerance
    clock: Clock
    #: What the store keys records under: app and receiver (``HOOKS_NAMESPACE``).
    ns: str = ""
    leases: Leases = dataclasses.field(default_factory=NoLeases)

    def __post_init__(self) -> None:
        if not self.ns:
            object.__setattr__(self, "ns", self.name)


def _noop(_name: str, **_kwargs: Any) -> None:
    return None


class Pipeline:
    """Processes deliveries for one receiver."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        #: Keeps the claims of running handlers alive (tests give their own).
        self.leases = config.leases

    def process(self, headers: Headers, body: bytes, *, run: Run, notify: Notify = _noop) -> Outcome:
        cfg = self.config
        started = time.perf_counter()
        received_at = cfg.clock()
        notify("delivery_received", receiver=cfg.name)
        try:
            verified = cfg.provider.verify(headers, body, cfg.keys, now=received_at, tolerance=cfg.tolerance)
        except VerificationError as exc:
            return self._reject("rejected", exc, received_at, started, notify)
        try:
            parsed = cfg.provider.parse(headers, body)
            _check_text("id", parsed.id)
            _check_text("type", parsed.type)
        except PayloadError as exc:
            return self._reject("invalid", exc, received_at, started, notify)
        event = Event(
            id=parsed.id,
            type=parsed.type,
            payload=parsed.payload,
            body=body,
            headers=headers,
            provider=cfg.provider.name,
            receiver=cfg.name,
            timestamp=verified.timestamp,
            received_at=received_at,
            attempt=parsed.attempt,
            secret_index=verified.secret_index,
        )
        notify("delivery_verified", receiver=cfg.name, event=event)
        immediate = cfg.provider.immediate(parsed)
        if immediate is not None:  # a handshake (Slack's url_verification): no dedupe, no handler
            reply = immediate if isinstance(immediate, Reply) else Reply(200, json.dumps(immediate).encode())
            return Outcome("received", reply=reply, event=event)
        try:
            return self._dispatch(event, run, notify, started)
        except StoreUnavailable as exc:
            log.warning("dedupe store unavailable for %s", cfg.name, exc_info=True)
            return Outcome("unavailable", error=exc, event=event)
        except LeaseLost as exc:
            # Our lease ran out mid-handler and another worker owns the delivery now.
            log.warning("lease lost on %s %s", cfg.name, event.id)
            return Outcome("in-flight", error=exc, event=event)

    def refuse(self, error: BodyTooLarge | PayloadError, *, notify: Notify = _noop) -> Outcome:
        """A request refused before its body could be read (413, or a 400 for a short body).

        It goes through the same signals and delivery log as every other request.
        """
        started = time.perf_counter()
        notify("delivery_received", receiver=self.config.name)
        kind = "rejected" if isinstance(error, BodyTooLarge) else "invalid"
        return self._reject(kind, error, self.config.clock(), started, notify)

    # Steps ----------------------------------------------------------------

    def _reject(
        self, kind: str, exc: HookError, received_at: float, started: float, notify: Notify
    ) -> Outcome:
        cfg = self.config
        outcome = Outcome(kind, error=exc)
        status = answer(outcome, cfg.provider).status
        notify("delivery_rejected", receiver=cfg.name, reason=exc.reason)
        log_quietly(
            cfg.store,
            cfg.ns,
            LogEntry(None, None, kind, status, exc.reason, None, received_at, time.perf_counter() - started),
        )
        return outcome

    def _dispatch(self, event: Event, run: Run, notify: Notify, started: float) -> Outcome:
        cfg = self.config
        routes = cfg.router.match(event.type)
        now = event.received_at
        claim = cfg.store.claim(cfg.ns, event.id, now=now, lease=cfg.lease, ttl=cfg.dedupe_ttl)
        if claim.state == "done":
            notify("delivery_duplicate", receiver=cfg.name, event=event, in_flight=False)
            log_quietly(cfg.store, cfg.ns, log_entry(event, "duplicate", 200, started))
            return Outcome("duplicate", reply=claim.reply, event=event)
        if claim.state == "inflight":
            notify("delivery_duplicate", receiver=cfg.name, event=event, in_flight=True)
            busy = InFlight(after=claim.retry_after)
            return Outcome("in-flight", error=busy, event=event)

        held = self.leases.hold(cfg.store, cfg.ns, event.id, claim.token, lease=cfg.lease, clock=cfg.clock)
        try:
            return self._run_pending(event, routes, claim.handlers, claim.token, run, notify, started)
        finally:
            self.leases.drop(held)

    def _run_pending(
        self,
        event: Event,
        routes: Sequence[Route],
        done: Mapping[str, Reply | None],
        token: str,
        run: Run,
        notify: Notify,
        started: float,
    ) -> Outcome:
        """Run the handlers an earlier attempt has not completed, then complete."""
        cfg = self.config
        replies: dict[str, Reply | None] = dict(done)
        ran: list[str] = []
        deferred: list[str] = []
        pending = [r for r in routes if r.name not in replies]
        for position, route in enumerate(pending):
            try:
                if route.defer is None:
                    reply = _accepted(route, event, run(route, event))
                else:
                    # Handed to a queue; its mark means "enqueued", shared with the sync path.
                    hand_over(route.defer, route.name, event)
                    reply = None
            except Exception as exc:
                return self._failed(event, route, exc, token, ran, notify, started)
            replies[route.name] = reply
            (ran if route.defer is None else deferred).append(route.name)
            if position < len(pending) - 1:
                # Durable per-handler success, so a later failure re-runs only the rest.
                cfg.store.mark(cfg.ns, event.id, token, route.name, reply, now=cfg.clock())
        reply = _first_reply(routes, replies)
        kind = "received" if routes else "ignored"
        cfg.store.complete(
            cfg.ns,
            event.id,
            token,
            outcome=kind,
            reply=reply,
            now=cfg.clock(),
            ttl=cfg.dedupe_ttl,
            entry=log_entry(event, kind, reply.status if reply else 200, started, ran),
        )
        if routes:
            notify(
                "event_handled", receiver=cfg.name, event=event, handlers=tuple(ran), deferred=tuple(deferred)
            )
        else:
            notify("event_ignored", receiver=cfg.name, event=event)
        return Outcome(kind, reply=reply, event=event)

    def _failed(
        self,
        event: Event,
        route: Route,
        exc: Exception,
        token: str,
        ran: Sequence[str],
        notify: Notify,
        started: float,
    ) -> Outcome:
        cfg = self.config
        error: HookError
        if isinstance(exc, (Retry, StoreUnavailable, QueueUnavailable)):
            error = exc
            kind = "retry"
        elif isinstance(exc, Declined):
            log.warning(
                "handler %s answered %s on %s %s: not done, the sender will retry",
                route.name,
                exc.reply.status,
                cfg.name,
                event.id,
            )
            error = exc
            kind = "error"
        else:
            log.error("handler %s failed on %s %s", route.name, cfg.name, event.id, exc_info=exc)
            error = HookError("handler failed")
            kind = "error"
        notify("handler_failed", receiver=cfg.name, event=event, handler=route.name, error=exc)
        try:
            cfg.store.release(cfg.ns, event.id, token, now=cfg.clock())
        except StoreUnavailable:
            log.warning("could not release %s; its lease will expire", event.id)
        log_quietly(cfg.store, cfg.ns, log_entry(event, kind, error.status, started, ran, error.reason))
        reply = exc.reply if isinstance(exc, Declined) and exc.status == exc.reply.status else None
        return Outcome(kind, reply=reply, error=error, event=event)


class Declined(HookError):
    """A handler returned a non-2xx response: it did not do its work.

    Nothing is recorded as done and the claim is released, so the sender
    retries; its own status and body are answered. A 3xx is never
    answered (senders treat a redirect as a permanent failure): it is a 500.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.status = reply.status if reply.status >= 400 else 500
        super().__init__(f"handler answered {reply.status}")


def _accepted(route: Route, event: Event, reply: Reply | None) -> Reply | None:
    """A handler's rendered reply as recorded for its success (None: the default body).

    Raises :class:`Declined` for a non-2xx reply. A reply over
    :data:`MAX_REPLY` is logged and replaced by the default body: the
    handler's side effects happened, so it must count as done.
    """
    if reply is None:
        return None
    if not 200 <= reply.status < 300:
        raise Declined(reply)
    if len(reply.body) > MAX_REPLY:
        log.error(
            "handler %s returned %d bytes for %s (more than %d): answered with the default body",
            route.name,
            len(reply.body),
            event.id,
            MAX_REPLY,
        )
        return None
    return reply


def _check_text(field: str, value: str) -> None:
    """Ids and types are keys in stores and logs: they must be encodable text.

    A lone surrogate (``"\\ud800"`` in the JSON) is valid for Python but no
    store can write it; it is the sender's error, so a 400, not a 500.
    """
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(f"invalid {field}: not valid Unicode text") from None


def log_entry(
    event: Event, status: str, code: int, started: float, ran: Sequence[str] = (), reason: str = ""
) -> LogEntry:
    """The delivery-log line for ``event``; ``started`` is a ``perf_counter`` reading."""
    e, duration = event, time.perf_counter() - started
    return LogEntry(e.id, e.type, status, code, reason, e.secret_index, e.received_at, duration, (*ran,))


def log_quietly(store: DedupeStore, ns: str, entry: LogEntry) -> None:
    """The log is for operators; losing a line must not change the answer."""
    try:
        store.log(ns, entry)
    except StoreUnavailable:
        log.warning("delivery log unavailable for %s", ns)


def _first_reply(routes: Sequence[Route], replies: dict[str, Reply | None]) -> Reply | None:
    for route in routes:
        reply = replies.get(route.name)
        if reply is not None:
            return reply
    return None
