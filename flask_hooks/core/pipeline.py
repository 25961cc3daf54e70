"""One delivery, start to finish, without Flask.

verify -> parse -> claim (keeping the delivery for the inbox) -> run the
pending handlers -> complete -> answer. The transport passes headers and
the exact body bytes in, a ``run`` callable that invokes one handler (and
renders its return value), and a ``notify`` callable for signals. It gets
an :class:`~flask_hooks.core.answer.Outcome` back and turns it into a
response with :func:`~flask_hooks.core.answer.answer`.

Nothing is acknowledged before ``complete`` has durably stored the
outcome; a failing handler releases the claim so the sender's retry runs
it again, and handlers that already succeeded are not run twice. A replay
(:meth:`Pipeline.replay`) goes through the same claim, lease and marks.

What a pipeline is built from (:class:`ReceiverConfig` and the lease
keeper's protocol) is in :mod:`~flask_hooks.core.config`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

from .answer import Outcome, answer, safe_reason
from .attempts import cause_line, credentials, log_entry, log_failure, log_quietly
from .config import ReceiverConfig as ReceiverConfig
from .deferral import hand_over, run_again
from .errors import (
    BodyTooLarge,
    HookError,
    InFlight,
    LeaseLost,
    PayloadError,
    PayloadTooDeep,
    QueueUnavailable,
    Retry,
    StoreUnavailable,
    VerificationError,
)
from .event import Event, HeaderMap, Headers, header_pairs, own_payload
from .ids import check_id_and_type
from .inbox import Kept, Stored, excerpt, redact
from .replies import Declined, accepted, first_reply
from .routing import Route
from .store import LogEntry, Reply

log = logging.getLogger("flask_hooks")

Run = Callable[[Route, Event], "Reply | None"]
Notify = Callable[..., None]
_TAKEN_OVER = "another attempt claimed it mid-handler and may have run them too (atomic ones: rolled back)"


class Rerun(NamedTuple):
    """A replay of some handlers only (``replay(handlers=[...])``)."""

    names: frozenset[str]
    #: Whether the delivery was completed; then its recorded reply stays the one duplicates get.
    completed: bool = False
    reply: Reply | None = None
    #: The chosen deferred handlers that a worker ran: they are enqueued as jobs of their own.
    again: frozenset[str] = frozenset()


def _noop(_name: str, **_kwargs: Any) -> None:
    return None


class Pipeline:
    """Processes deliveries for one receiver."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        #: Keeps the claims of running handlers alive (tests give their own).
        self.leases = config.leases

    def process(self, headers: HeaderMap, body: bytes, *, run: Run, notify: Notify = _noop) -> Outcome:
        if type(headers) is dict:  # not case-insensitive, as the providers read headers
            headers = Headers(headers)
        cfg = self.config
        started = time.perf_counter()
        received_at = cfg.clock()
        notify("delivery_received", receiver=cfg.name)
        try:
            verified = cfg.provider.verify(headers, body, cfg.keys, now=received_at, tolerance=cfg.tolerance)
        except VerificationError as exc:
            return self._reject("rejected", exc, received_at, started, notify, body)
        try:
            parsed = cfg.provider.parse(headers, body)
            check_id_and_type(parsed.id, parsed.type)
        except PayloadError as exc:
            return self._reject("invalid", exc, received_at, started, notify, body)
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
        return self._guarded(event, started, lambda: self._dispatch(event, run, notify, started))

    def refuse(self, error: BodyTooLarge | PayloadError, *, notify: Notify = _noop) -> Outcome:
        """A request refused before its body could be read (413, or a 400 for a short body).

        It goes through the same signals and delivery log as every other request.
        """
        started = time.perf_counter()
        notify("delivery_received", receiver=self.config.name)
        kind = "rejected" if isinstance(error, BodyTooLarge) else "invalid"
        return self._reject(kind, error, self.config.clock(), started, notify, b"")

    def replay(
        self, stored: Stored, *, run: Run, notify: Notify = _noop, handlers: Collection[str] | None = None
    ) -> Outcome:
        """Run a kept delivery's handlers again, through the same claim and lease.

        Without ``handlers``, those that have not succeeded; with them, exactly those (even
        if they succeeded), and a handler still owed besides keeps the delivery failed: it is
        released, not completed, so a sender's retry or the next replay runs that one. The
        signature and the timestamp are not checked again: they were at receipt. Raises
        :class:`InFlight` while a sender's retry or another replay holds it.
        """
        cfg = self.config
        if isinstance(handlers, str):
            raise TypeError("handlers: a list of handler names, not one string")
        handlers = None if handlers is None else tuple(handlers)  # read once: a generator, too
        if handlers is not None and not handlers:
            raise ValueError("handlers: name at least one handler (None runs those that have not succeeded)")
        started, now = time.perf_counter(), cfg.clock()
        routes = cfg.router.match(stored.type)
        names = {r.name for r in routes}
        unknown = sorted(set(handlers or ()) - names)
        if unknown:
            raise ValueError(f"no handler {', '.join(map(repr, unknown))} for {stored.type!r}")
        headers = Headers(stored.headers)
        try:
            payload = cfg.provider.parse(headers, stored.body).payload
        except Exception as exc:  # a provider changed since (a custom one's new release)
            log.warning("%s %s cannot be replayed: %s", cfg.name, stored.id, type(exc).__name__)
            raise ValueError(f"{stored.id!r}: the receiver's provider no longer reads its body") from None
        event = Event(
            id=stored.id,
            type=stored.type,
            payload=payload,
            body=stored.body,
            headers=headers,
            provider=cfg.provider.name,
            receiver=cfg.name,
            received_at=stored.received_at,
            secret_index=stored.secret_index or 0,
            replayed=True,
        )
        # Asked before the claim, so a store failing here leaves nothing held.
        chosen, ttl = frozenset(handlers or ()), max(cfg.dedupe_ttl, cfg.retention)
        again = run_again(cfg.store, cfg.ns, stored, routes, chosen, now=now, lease=cfg.lease, ttl=ttl)
        # The store says, with the claim, whether the delivery was completed: `stored` may be
        # stale (a sender's retry may have completed it since it was read).
        keep = [r.name for r in routes if r.name not in chosen] if handlers is not None else []
        claim = cfg.store.reopen(cfg.ns, stored.id, now=now, lease=cfg.lease, rerun=chosen, keep=keep)
        if claim.state == "inflight":
            raise InFlight(after=claim.retry_after)
        if claim.state == "done":  # nothing to run, nothing changed; subscribers hear of it all the same
            done = Outcome(claim.outcome or "received", event=event)
            notify("delivery_replayed", receiver=cfg.name, event=event, outcome=done.kind)
            return done
        # Completed: every handler but the chosen ones succeeded (reopen marked them, `keep`),
        # and the recorded reply stays the one duplicates get.
        completed = bool(claim.outcome)
        rerun = None if handlers is None else Rerun(chosen, completed, claim.reply, again)
        marks, token = claim.handlers, claim.token

        def held() -> Outcome:
            return self._held(event, routes, marks, token, run, notify, started, at=now, rerun=rerun)

        outcome = self._guarded(event, started, held)
        notify("delivery_replayed", receiver=cfg.name, event=event, outcome=outcome.kind)
        return outcome

    # Steps ----------------------------------------------------------------

    def _guarded(self, event: Event, started: float, step: Callable[[], Outcome]) -> Outcome:
        """Store trouble after verification: 503 (never a 2xx); a lost lease, a 409 kept as an attempt."""
        try:
            return step()
        except StoreUnavailable as exc:
            why = cause_line(exc)  # the store's own error, what to fix: a full memory or disk
            log.warning("dedupe store unavailable for %s%s", self.config.name, why, exc_info=True)
            return Outcome("unavailable", error=exc, event=event)
        except LeaseLost as exc:
            # Our lease ran out mid-handler (or the store lost the record): another attempt owns it.
            log.error("lease lost on %s %s: %s", self.config.name, event.id, _TAKEN_OVER)
            at = self.config.clock()  # when it was found out: after the attempt that took it over
            entry = log_entry(event, "in-flight", exc.status, started, reason="lease lost", error=exc, at=at)
            log_quietly(self.config.store, self.config.ns, entry)
            return Outcome("in-flight", error=exc, event=event)

    def _reject(
        self, kind: str, exc: HookError, received_at: float, started: float, notify: Notify, body: bytes
    ) -> Outcome:
        cfg = self.config
        outcome = Outcome(kind, error=exc)
        status = answer(outcome, cfg.provider).status
        notify("delivery_rejected", receiver=cfg.name, reason=exc.reason)
        duration = time.perf_counter() - started
        shown = excerpt(body, cfg.provider.redacted_fields, cfg.secrets) if body else ""
        entry = LogEntry(None, None, kind, status, exc.reason, None, received_at, duration, excerpt=shown)
        log_quietly(cfg.store, cfg.ns, entry)
        return outcome

    def _dispatch(self, event: Event, run: Run, notify: Notify, started: float) -> Outcome:
        cfg = self.config
        routes = cfg.router.match(event.type)
        now = event.received_at
        keep = None
        if cfg.retention:
            headers = redact(header_pairs(event.headers), cfg.provider.redacted_headers)
            keep = Kept(event.type, event.body, headers, now, event.secret_index, cfg.retention)
        claim = cfg.store.claim(cfg.ns, event.id, now=now, lease=cfg.lease, ttl=cfg.dedupe_ttl, keep=keep)
        if claim.state == "done":
            notify("delivery_duplicate", receiver=cfg.name, event=event, in_flight=False)
            log_quietly(cfg.store, cfg.ns, log_entry(event, "duplicate", 200, started))
            return Outcome("duplicate", reply=claim.reply, event=event)
        if claim.state == "inflight":
            notify("delivery_duplicate", receiver=cfg.name, event=event, in_flight=True)
            busy = InFlight(after=claim.retry_after)
            log_quietly(cfg.store, cfg.ns, log_entry(event, "in-flight", busy.status, started))
            return Outcome("in-flight", error=busy, event=event)
        return self._held(event, routes, claim.handlers, claim.token, run, notify, started)

    def _held(
        self,
        event: Event,
        routes: Sequence[Route],
        done: Mapping[str, Reply | None],
        token: str,
        run: Run,
        notify: Notify,
        started: float,
        *,
        at: float | None = None,
        rerun: Rerun | None = None,
    ) -> Outcome:
        """Run the pending handlers while the lease keeper renews the claim."""
        cfg = self.config
        held = self.leases.hold(cfg.store, cfg.ns, event.id, token, lease=cfg.lease, clock=cfg.clock)
        try:
            return self._run_pending(event, routes, done, token, run, notify, started, at, held, rerun)
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
        at: float | None,
        held: object,
        rerun: Rerun | None = None,
    ) -> Outcome:
        """Run the handlers an earlier attempt has not completed (of ``rerun``'s, for a replay
        of some), then complete; or, when handlers besides those are still owed, release."""
        cfg = self.config
        replies: dict[str, Reply | None] = dict(done)
        ran: list[str] = []
        deferred: list[str] = []
        pending = [r for r in routes if r.name not in replies and (rerun is None or r.name in rerun.names)]
        # Only a replay of some handlers can leave others owed; a delivery never does.
        owed = rerun is not None and len(pending) < sum(r.name not in replies for r in routes)
        for position, route in enumerate(pending):
            try:
                handed = own_payload(event, cfg.provider.parse) if position else event
                again = rerun is not None and route.name in rerun.again
                reply = self._run_one(route, handed, token, run, rerun=token if again else "")
            except Exception as exc:
                return self._failed(event, route, exc, token, ran, notify, started, at, held)
            replies[route.name] = reply
            (ran if route.defer is None else deferred).append(route.name)
            if (owed or position < len(pending) - 1) and not route.atomic:
                # Durable per-handler success, so a later failure re-runs only the rest.
                cfg.store.mark(cfg.ns, event.id, token, route.name, reply, now=cfg.clock())
        if owed:
            entry = log_entry(event, "replayed", 200, started, ran, at=at)
            cfg.store.release(cfg.ns, event.id, token, now=cfg.clock(), entry=entry)
            notify(
                "event_handled", receiver=cfg.name, event=event, handlers=tuple(ran), deferred=tuple(deferred)
            )
            return Outcome("pending", event=event)
        reply = rerun.reply if rerun is not None and rerun.completed else first_reply(routes, replies)
        kind = "received" if routes else "ignored"
        word = "replayed" if event.replayed else kind
        cfg.store.complete(
            cfg.ns,
            event.id,
            token,
            outcome=kind,
            reply=reply,
            now=cfg.clock(),
            ttl=cfg.dedupe_ttl,
            entry=log_entry(event, word, reply.status if reply else 200, started, ran, at=at),
        )
        if routes:
            notify(
                "event_handled", receiver=cfg.name, event=event, handlers=tuple(ran), deferred=tuple(deferred)
            )
        else:
            notify("event_ignored", receiver=cfg.name, event=event)
        return Outcome(kind, reply=reply, event=event)

    def _run_one(self, route: Route, event: Event, token: str, run: Run, *, rerun: str = "") -> Reply | None:
        cfg = self.config
        if route.defer is not None:
            # Handed to a queue; its mark means "enqueued", shared with the sync path. Re-run
            # by an operator, it is a job of its own, which the worker runs though it ran before.
            hand_over(
                route.defer, route.name, event, ns=cfg.ns, redacted=cfg.provider.redacted_headers, rerun=rerun
            )
            return None
        if route.atomic:
            # The handler's writes and its mark commit together, fenced by our token.
            return cfg.store.atomic(
                cfg.ns,
                event.id,
                token,
                route.name,
                lambda: accepted(route, event, run(route, event)),
                now=cfg.clock(),
            )
        return accepted(route, event, run(route, event))

    def _failed(
        self,
        event: Event,
        route: Route,
        exc: Exception,
        token: str,
        ran: Sequence[str],
        notify: Notify,
        started: float,
        at: float | None,
        held: object,
    ) -> Outcome:
        cfg = self.config
        error: HookError
        if isinstance(exc, LeaseLost):
            raise exc  # an atomic handler rolled back: another worker owns the delivery
        secrets = credentials(event, cfg.provider, cfg.secrets)
        if isinstance(exc, StoreUnavailable):  # an atomic handler's record or commit: the store's
            why = cause_line(exc, secrets)
            log.warning("dedupe store unavailable for %s at %s%s", cfg.name, route.name, why)
            error, kind = exc, "unavailable"
        elif isinstance(exc, (Retry, QueueUnavailable)):
            error, kind = exc, "retry"
        elif isinstance(exc, PayloadTooDeep):
            log.warning("%s %s not handed to %s: %s", cfg.name, event.id, route.name, exc.reason)
            error, kind = exc, "invalid"
        elif isinstance(exc, Declined):
            log.warning("handler %s answered %s on %s %s: not done, the sender will retry", route.name,
                        exc.reply.status, cfg.name, event.id)  # fmt: skip
            error, kind = exc, "error"
        else:
            log_failure(f"handler {route.name} failed on {cfg.name} {event.id}", exc, secrets)
            error, kind = HookError("handler failed"), "error"
        # ``handlers``: those that succeeded before it in this attempt (recorded, not run again).
        notify("handler_failed", receiver=cfg.name, event=event, handler=route.name, error=exc,
               handlers=tuple(ran))  # fmt: skip
        reason = safe_reason(error)  # a Retry's own words stay in its error text, blanked
        entry = log_entry(event, kind, error.status, started, ran, reason, error=exc, failed=route.name,
                          at=at, secrets=secrets)  # fmt: skip
        if self.leases.lost(held):  # asked before the release, which is fenced and says nothing
            log.error("lease lost on %s %s: %s", cfg.name, event.id, _TAKEN_OVER)
        try:
            cfg.store.release(cfg.ns, event.id, token, now=cfg.clock(), entry=entry)
        except StoreUnavailable:
            log.warning("could not release %s; its lease will expire", event.id)
        reply = exc.reply if isinstance(exc, Declined) and exc.status == exc.reply.status else None
        return Outcome(kind, reply=reply, error=error, event=event)
