"""``flask hooks show|replay|forget|purge``: the delivery inbox from a shell.

Registered on the ``hooks`` group of :mod:`flask_hooks.cli`. Everything
printed goes through :meth:`~flask_hooks.inbox.Delivery.shown_payload`
and the headers as stored (credentials redacted), never the raw payload.
A command that fails says why on stderr and exits non-zero; a store that
cannot be reached is reported before anything is changed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click

from .cli import (
    cli,
    current_app_object,
    current_state,
    duration_option,
    format_duration,
    known,
    last_line,
    printable,
    receivers_of,
    store_down,
    when,
)
from .core.errors import HookError, InFlight, StoreUnavailable
from .extension import HooksState, Receiver
from .inbox import MASK, Delivery, Inbox

#: Deliveries read per query while selecting a bulk replay.
PAGE = 200

#: The statuses a bulk replay selects by (an in-flight delivery cannot be replayed).
REPLAYABLE = ("failed", "received", "ignored")

#: A replay that ends in one of these succeeded.
DONE = ("received", "ignored")

RECEIVER_OPTION = click.option(
    "--receiver", "receiver_name", metavar="NAME", help="Which receiver (default: the one that keeps ID)."
)


def inbox_of(receiver: Receiver) -> Inbox:
    return receiver.hooks.inbox(current_app_object())


def holders(state: HooksState, id: str, name: str | None) -> list[tuple[Receiver, Delivery]]:
    """The receivers (the named one, or all) that keep a delivery ``id``, with it."""
    found = []
    for receiver in receivers_of(state, name):
        try:
            delivery = inbox_of(receiver).get(id)
        except StoreUnavailable as exc:
            raise store_down(receiver, exc, ": nothing was changed") from None
        if delivery is not None:
            found.append((receiver, delivery))
    if len(found) > 1:
        names = ", ".join(receiver.name for receiver, _ in found)
        raise click.UsageError(f"receivers {names} all keep a delivery {id!r}; choose one with --receiver")
    return found


def _unknown(state: HooksState, id: str, name: str | None) -> str:
    where = f"receiver {name!r}" if name is not None else f"any receiver ({known(state)})"
    return f"no delivery {id!r} is kept by {where}"


def find(id: str, name: str | None) -> tuple[Receiver, Delivery]:
    state = current_state()
    found = holders(state, id, name)
    if not found:
        raise click.ClickException(_unknown(state, id, name))
    return found[0]


# show ------------------------------------------------------------------------------


def is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def shown_body(delivery: Delivery) -> str:
    """The body for people: pretty JSON with credentials masked, or escaped text."""
    if not delivery.body:
        return "(empty)"
    if is_json(delivery.body):
        return json.dumps(delivery.shown_payload(), indent=2, ensure_ascii=False)
    if delivery.masked:  # fields to mask in a body that cannot be parsed: show none of it
        return f"{MASK} (not JSON, so {', '.join(delivery.masked)} cannot be masked)"
    return delivery.body.decode("utf-8", "backslashreplace")


def describe(delivery: Delivery) -> Iterator[str]:
    d = delivery
    secret = "-" if d.secret_index is None else str(d.secret_index)
    yield f"{printable(d.id)}  {printable(d.type)}  {d.status}"
    yield f"receiver {d.receiver}  received {when(d.received_at)} UTC  secret {secret}"
    yield "headers:"
    yield from (f"  {printable(name)}: {printable(value)}" for name, value in d.headers)
    yield "body:"
    yield from (f"  {printable(line)}" for line in shown_body(d).splitlines())
    yield "handlers:"
    width = max((len(name) for name in d.handlers), default=0)
    yield from (f"  {name.ljust(width)}  {state}" for name, state in d.handlers.items())
    if not d.handlers:
        yield "  (none matches this type)"
    yield "attempts:"
    for number, a in enumerate(d.attempts, 1):
        failed = f"  failed: {a.failed}" if a.failed else ""
        ran = ",".join(a.handlers) or "-"
        ms = f"{a.duration * 1000:.1f} ms"
        yield f"  {number}  {when(a.at)}  {a.outcome}  {a.code}  {ms}  ran: {ran}{failed}"
    errors = [(number, a) for number, a in enumerate(d.attempts, 1) if a.error]
    if errors:
        number, last = errors[-1]
        yield f"last error (attempt {number}{f', {last.failed}' if last.failed else ''}):"
        yield from (f"  {printable(line)}" for line in last.error.rstrip().splitlines())


def as_document(delivery: Delivery) -> dict[str, Any]:
    d, parsed = delivery, is_json(delivery.body)
    body = None if parsed or not d.body else shown_body(d)
    return {
        "receiver": d.receiver,
        "id": d.id,
        "type": d.type,
        "status": d.status,
        "received_at": d.received_at,
        "secret_index": d.secret_index,
        "headers": [list(pair) for pair in d.headers],
        "payload": d.shown_payload() if parsed else None,
        "body": body,
        "handlers": dict(d.handlers),
        "attempts": [attempt._asdict() for attempt in d.attempts],
    }


@cli.command("show")
@click.argument("delivery_id", metavar="ID")
@RECEIVER_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def show_command(delivery_id: str, receiver_name: str | None, as_json: bool) -> None:
    """Show a kept delivery: headers, body, handlers and every attempt.

    Credentials are never shown: the headers were redacted when stored,
    and body fields the provider declares are masked. The traceback of the
    last error is printed in full.
    """
    _, delivery = find(delivery_id, receiver_name)
    if as_json:
        click.echo(json.dumps(as_document(delivery)))
        return
    for line in describe(delivery):
        click.echo(line)


# replay ----------------------------------------------------------------------------


def select(
    receivers: Iterable[Receiver], status: str, pattern: str | None, since: float | None
) -> list[tuple[Receiver, Delivery]]:
    """Every kept delivery that passes the filters, oldest first (the order they came in)."""
    found: list[tuple[Receiver, Delivery]] = []
    for receiver in receivers:
        inbox, before = inbox_of(receiver), None
        after = None if since is None else receiver.now() - since
        try:
            while True:
                page = inbox.query(status=status, type=pattern, since=after, before=before, limit=PAGE)
                found.extend((receiver, delivery) for delivery in page)
                if len(page) < PAGE:
                    break
                before = (page[-1].received_at, page[-1].id)
        except StoreUnavailable as exc:
            raise store_down(receiver, exc, ": nothing was replayed") from None
    found.sort(key=lambda item: (item[1].received_at, item[1].id))
    return found


def check_handlers(plan: Sequence[tuple[Receiver, Delivery]], handlers: Sequence[str]) -> None:
    """``--handler`` names every selected delivery has; a usage error before anything runs."""
    for _, delivery in plan:
        missing = [name for name in handlers if name not in delivery.handlers]
        if missing:
            names = ", ".join(delivery.handlers) or "none"
            raise click.UsageError(
                f"{', '.join(map(repr, missing))} does not handle {delivery.id!r}"
                f" (type {delivery.type!r}; its handlers: {names})"
            )


def to_run(delivery: Delivery, handlers: Sequence[str]) -> str:
    if handlers:
        return ", ".join(handlers)
    pending = [name for name, state in delivery.handlers.items() if state != "succeeded"]
    return ", ".join(pending) or "nothing (every handler succeeded)"


class Tally:
    """What a bulk replay did: counts by result, and the problems to report."""

    def __init__(self) -> None:
        self.replayed: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def skip(self, why: str, delivery_id: str, message: str) -> None:
        self.skipped[why] += 1
        self.problems.append(f"{printable(delivery_id)}: {message}")

    def summary(self) -> str:
        total = sum(self.replayed.values())
        parts = [f"{count} {status}" for status, count in self.replayed.items()]
        line = f"replayed {total}" + (f": {', '.join(parts)}" if parts else "")
        if self.skipped:
            line += "; not replayed: " + ", ".join(f"{count} {why}" for why, count in self.skipped.items())
        return line

    @property
    def failed(self) -> bool:
        return bool(self.skipped) or any(status not in DONE for status in self.replayed)


def replay_one(receiver: Receiver, delivery: Delivery, handlers: Sequence[str], tally: Tally) -> None:
    """Replay one delivery; every outcome but a store outage is counted, not raised."""
    try:
        after = inbox_of(receiver).replay(delivery.id, handlers=handlers or None)
    except InFlight:
        tally.skip("in flight", delivery.id, "in flight (a sender's retry or a replay holds it); try later")
    except LookupError:
        tally.skip("unknown", delivery.id, "no longer kept (forgotten or purged)")
    except StoreUnavailable:
        raise
    except (HookError, ValueError) as exc:
        tally.skip("refused", delivery.id, str(exc))
    else:
        tally.replayed[after.status] += 1
        last = after.attempts[-1] if after.attempts else None
        if after.status not in DONE and last is not None:
            why = f"{last.failed}: {last_line(last.error) or last.outcome}" if last.failed else last.outcome
            tally.problems.append(f"{printable(delivery.id)}: {after.status} ({printable(why)})")


def progress(plan: list[tuple[Receiver, Delivery]]) -> contextlib.AbstractContextManager[Iterable[Any]]:
    """A progress bar on stderr for bulk replays; a single replay needs none."""
    if len(plan) < 2:
        return contextlib.nullcontext(plan)
    label = f"replaying {len(plan)} deliveries"
    return click.progressbar(plan, label=label, file=sys.stderr)


@cli.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--status", type=click.Choice(REPLAYABLE), help="Replay every kept delivery with this status.")
@click.option("--type", "pattern", metavar="PATTERN", help="With --status: only these types (payment.*).")
@click.option(
    "--since", callback=duration_option, metavar="DURATION", help="With --status: only the last DURATION."
)
@click.option(
    "--handler",
    "handlers",
    multiple=True,
    metavar="NAME",
    help="Re-run exactly this handler, even if it succeeded (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="List what would be replayed; change nothing.")
@RECEIVER_OPTION
def replay_command(
    ids: tuple[str, ...],
    status: str | None,
    pattern: str | None,
    since: float | None,
    handlers: tuple[str, ...],
    dry_run: bool,
    receiver_name: str | None,
) -> None:
    """Run kept deliveries' handlers again, after a fix.

    Runs the handlers that have not succeeded (or exactly the --handler
    ones) through the same claim and lease as a sender's retry, so the
    two never run a handler twice; the signature is not checked again.
    Prints a summary; exits 1 when any replay failed or could not run.
    """
    if ids and (status is not None or pattern is not None or since is not None):
        raise click.UsageError("give delivery ids or select with --status, not both")
    if not ids and status is None:
        raise click.UsageError("give delivery ids, or select with --status failed [--type] [--since]")
    state, tally = current_state(), Tally()
    if ids:
        plan = []
        for delivery_id in dict.fromkeys(ids):
            found = holders(state, delivery_id, receiver_name)
            if found:
                plan.extend(found)
            else:
                tally.skip("unknown", delivery_id, _unknown(state, delivery_id, receiver_name))
    else:
        assert status is not None
        plan = select(receivers_of(state, receiver_name), status, pattern, since)
    check_handlers(plan, handlers)
    if dry_run:
        for receiver, delivery in plan:
            click.echo(
                f"{receiver.name}  {printable(delivery.id)}  {printable(delivery.type)}  {delivery.status}"
                f"  would run: {to_run(delivery, handlers)}"
            )
        click.echo(f"dry run: would replay {len(plan)}; nothing was changed")
    elif not plan and not tally.skipped:
        click.echo("nothing to replay")
    else:
        _replay(plan, handlers, tally)
    _report(tally)


def _replay(plan: list[tuple[Receiver, Delivery]], handlers: Sequence[str], tally: Tally) -> None:
    done = 0
    try:
        with progress(plan) as items:
            for receiver, delivery in items:
                replay_one(receiver, delivery, handlers, tally)
                done += 1
    except StoreUnavailable as exc:
        click.echo(tally.summary())
        _print_problems(tally)
        stopped = f": stopped after {done} of {len(plan)}; the rest were not replayed"
        raise store_down(plan[done][0], exc, stopped) from None
    click.echo(tally.summary())


def _print_problems(tally: Tally) -> None:
    for problem in tally.problems:
        click.echo(problem, err=True)
    tally.problems.clear()


def _report(tally: Tally) -> None:
    _print_problems(tally)
    if tally.failed:
        raise SystemExit(1)


# forget and purge --------------------------------------------------------------------


@cli.command("forget")
@click.argument("delivery_id", metavar="ID")
@RECEIVER_OPTION
def forget_command(delivery_id: str, receiver_name: str | None) -> None:
    """Remove a delivery: the sender's next redelivery is processed afresh."""
    state = current_state()
    candidates = receivers_of(state, receiver_name)
    # With one receiver, no lookup: it also forgets a record the inbox does not keep (retention 0).
    receiver = candidates[0] if len(candidates) == 1 else find(delivery_id, receiver_name)[0]
    try:
        removed = inbox_of(receiver).forget(delivery_id)
    except StoreUnavailable as exc:
        raise store_down(receiver, exc, ": nothing was forgotten") from None
    if not removed:
        raise click.ClickException(_unknown(state, delivery_id, receiver.name))
    click.echo(f"forgot {printable(delivery_id)} ({receiver.name}): the next redelivery runs its handlers")


@cli.command("purge")
@click.option(
    "--older-than",
    "older_than",
    callback=duration_option,
    required=True,
    metavar="DURATION",
    help="Age, like 30d.",
)
@click.option("--receiver", "receiver_name", metavar="NAME", help="Only this receiver (default: all).")
def purge_command(older_than: float, receiver_name: str | None) -> None:
    """Remove kept deliveries received more than DURATION ago.

    A delivery younger than the dedupe TTL is forgotten as well: a
    redelivery of it would run its handlers again.
    """
    age = format_duration(older_than)
    for receiver in receivers_of(current_state(), receiver_name):
        try:
            removed = inbox_of(receiver).purge(older_than=older_than)
        except StoreUnavailable as exc:
            raise store_down(receiver, exc, f": not all deliveries older than {age} were purged") from None
        click.echo(f"{receiver.name}: purged {removed} deliveries received more than {age} ago")
        ttl = receiver.settings.dedupe_ttl
        if removed and older_than < ttl:
            click.echo(
                f"warning: {age} is less than the dedupe TTL ({format_duration(ttl)}) of {receiver.name!r}:"
                " a redelivery of a purged delivery runs its handlers again",
                err=True,
            )
