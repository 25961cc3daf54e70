"""``flask hooks replay``: run kept deliveries' handlers again, one id or a selection.

Registered on the ``hooks`` group of :mod:`flask_hooks.cli`, beside the
other inbox commands (:mod:`flask_hooks.inbox_cli`), whose lookups and
options it shares. Every replay goes through :meth:`Inbox.replay
<flask_hooks.inbox.Inbox.replay>`, so it takes the same claim and lease as a
sender's retry; the summary counts what happened and the exit status says
whether anything failed.
"""

from __future__ import annotations

import collections
import contextlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from .cli import (
    cli,
    current_state,
    duration_option,
    format_duration,
    pattern_option,
    printable,
    receivers_of,
    store_down,
)
from .core.attempts import exception_line
from .core.errors import HookError, InFlight, LeaseLost, StoreUnavailable
from .extension import Receiver
from .inbox import Delivery
from .inbox_cli import RECEIVER_OPTION, holders, inbox_of, unknown

#: Deliveries read per query while selecting a bulk replay.
PAGE = 200

#: The statuses a bulk replay selects by (an in-flight delivery cannot be replayed).
REPLAYABLE = ("failed", "received", "ignored")

#: A replay that ends in one of these succeeded.
DONE = ("received", "ignored")
#: A ``--handler`` replay that ran what it was asked while other handlers are still owed:
#: the delivery stays failed, but nothing this replay ran failed.
OWED = "ran, other handlers still owed"


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
    queued = delivery.queued
    pending = [n for n, state in delivery.handlers.items() if state != "succeeded" and n not in queued]
    note = f" (queued, left to their jobs: {', '.join(queued)}; --handler NAME hands one over)"
    if not pending:  # "every handler succeeded" would contradict the queued ones
        return "nothing" + (note if queued else " (every handler succeeded)")
    return ", ".join(pending) + (note if queued else "")


#: The order of a summary's counts, as the docs show them, whichever came first.
SUMMARY_ORDER = (*DONE, OWED, "failed")


def _rank(status: str) -> int:
    return SUMMARY_ORDER.index(status) if status in SUMMARY_ORDER else len(SUMMARY_ORDER)


class Tally:
    """What a bulk replay did: counts by result, and the problems to report."""

    def __init__(self) -> None:
        self.replayed: collections.Counter[str] = collections.Counter()
        #: Deliveries already completed (by status), for which nothing ran.
        self.done: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def skip(self, why: str, delivery_id: str, message: str) -> None:
        self.skipped[why] += 1
        self.problems.append(f"{printable(delivery_id)}: {message}")

    def summary(self) -> str:
        total = sum(self.replayed.values())
        ranked = sorted(self.replayed.items(), key=lambda item: _rank(item[0]))
        parts = [f"{count} {status}" for status, count in ranked]
        line = f"replayed {total}" + (f": {', '.join(parts)}" if parts else "")
        if self.done:
            line += "; nothing to run for " + ", ".join(f"{n} already {why}" for why, n in self.done.items())
        if self.skipped:
            line += "; not replayed: " + ", ".join(f"{count} {why}" for why, count in self.skipped.items())
        return line

    @property
    def failed(self) -> bool:
        return bool(self.skipped) or any(status not in (*DONE, OWED) for status in self.replayed)


def replay_one(receiver: Receiver, delivery: Delivery, handlers: Sequence[str], tally: Tally) -> None:
    """Replay one delivery; every outcome but a store outage is counted, not raised."""
    inbox = inbox_of(receiver)
    try:
        # As it is now, not when the bulk replay chose it: a retry or another replay may have
        # completed it since, and this one then runs nothing ("nothing to run", not "received").
        delivery = inbox.get(delivery.id) or delivery
        after = inbox.replay(delivery.id, handlers=handlers or None)
    except LeaseLost as exc:  # before InFlight, its base: here the handlers did run
        tally.skip("lease lost", delivery.id, str(exc))
    except InFlight:
        tally.skip("in flight", delivery.id, "in flight (a sender's retry or a replay holds it); try later")
    except LookupError:
        tally.skip("unknown", delivery.id, "no longer kept (forgotten or purged)")
    except StoreUnavailable:
        raise
    except (HookError, ValueError) as exc:
        tally.skip("refused", delivery.id, str(exc))
    else:
        # Completed before, no --handler and no new attempt: the pipeline ran nothing.
        if not handlers and delivery.status in DONE and len(after.attempts) == len(delivery.attempts):
            tally.done[after.status] += 1
            return
        if after.owed:
            tally.replayed[OWED] += 1
            return
        last = after.attempts[-1] if after.attempts else None
        tally.replayed[after.status] += 1
        if after.status not in DONE and last is not None:
            why = last.outcome
            if last.failed:
                why = f"{last.failed}: {exception_line(last.error) or last.outcome}"
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
@click.option(
    "--type",
    "pattern",
    callback=pattern_option,
    metavar="PATTERN",
    help="With --status: only these types (payment.*).",
)
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
                tally.skip("unknown", delivery_id, unknown(state, delivery_id, receiver_name))
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
    done, current = 0, None
    try:
        with progress(plan) as items:
            for receiver, delivery in items:
                current = receiver, delivery
                replay_one(receiver, delivery, handlers, tally)
                done, current = done + 1, None
    except (StoreUnavailable, KeyboardInterrupt) as exc:
        click.echo(tally.summary())
        _print_problems(tally)
        if current is not None:
            receiver, delivery = current
            lease = format_duration(receiver.settings.lease)
            click.echo(
                f"{printable(delivery.id)}: interrupted while it was replayed; its handlers may have"
                f" run. If it is in flight, replay it again once its lease ({lease}) runs out",
                err=True,
            )
        stopped = f": stopped after {done} of {len(plan)}; the rest were not replayed"
        if isinstance(exc, KeyboardInterrupt):
            click.echo(f"interrupted{stopped}", err=True)
            click.get_current_context().exit(130)  # as a shell reports SIGINT
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
