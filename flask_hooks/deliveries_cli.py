"""``flask hooks deliveries``: the delivery log, one line per attempt.

An attempt's error was blanked of the credentials known when it was
written; shown, it is blanked again of the receiver's secrets and of the
values its kept body holds under a field the provider declares now (one
kept before the field was declared is masked all the same).
"""

from __future__ import annotations

import json
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
    text_option,
    when,
)
from .core.attempts import exception_line, field_values
from .core.errors import StoreUnavailable
from .core.inbox import mask_excerpt, payload_of, type_matches
from .core.scrub import scrub
from .core.store import LogEntry
from .extension import Receiver

#: The words of the delivery log (``flask_hooks.core.pipeline``).
LOG_STATUSES = (
    "received",
    "ignored",
    "duplicate",
    "error",
    "retry",
    "rejected",
    "invalid",
    "in-flight",
    "replayed",
    "unavailable",
)
#: The worker's own word (``flask_hooks.defer.worker``): a deferred handler's job done. It
#: answers no sender, so it is no outcome of the dashboard's chart, but ``--status`` takes it.
WORKER_STATUSES = ("handled",)


class LogStatus(click.Choice):  # type: ignore[type-arg]  # generic since click 8.2; Flask allows 8.1
    """One of the log's words; ``failed``, the inbox's word (``replay --status``), says which it means."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "failed":
            self.fail(
                "'failed' is a delivery's state in the inbox (flask hooks replay --status failed);"
                " the log's word for an attempt whose handler failed is 'error'",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


def _reason(entry: LogEntry) -> str:
    if entry.failed:
        return f"{entry.failed}: {exception_line(entry.error) or entry.reason}"
    return entry.reason


def _format(entry: LogEntry, receiver: str) -> list[str]:
    secret = "-" if entry.secret_index is None else str(entry.secret_index)
    return [
        when(entry.received_at),
        receiver,
        printable(entry.id or "-"),
        printable(entry.type or "-"),
        entry.status,
        str(entry.code),
        secret,
        f"{entry.duration * 1000:.1f}",
        ",".join(entry.handlers) or "-",
        printable(_reason(entry)),
    ]


_HEADER = ["RECEIVED (UTC)", "RECEIVER", "ID", "TYPE", "STATUS", "CODE", "SECRET", "MS", "HANDLERS", "REASON"]


def read_log(
    receiver: Receiver,
    *,
    status: str | None,
    pattern: str | None,
    since: float | None,
    delivery_id: str | None,
    limit: int,
) -> list[LogEntry]:
    """The receiver's log lines that pass the filters, newest first.

    The store filters by status only, so with other filters the whole
    bounded log is read (``log_size`` lines at most).
    """
    filtered = pattern is not None or since is not None or delivery_id is not None
    scan = max(limit, receiver.store.log_size) if filtered else limit
    try:
        entries = receiver.store.deliveries(receiver.ns, status=status, limit=scan)
    except StoreUnavailable as exc:
        raise store_down(receiver, exc, ": cannot read the delivery log") from None
    after = None if since is None else receiver.now() - since
    found = [
        e
        for e in entries
        if type_matches(pattern, e.type or "")
        and (after is None or e.received_at >= after)
        and (delivery_id is None or e.id == delivery_id)
    ][:limit]
    try:
        return [_blanked(receiver, e) for e in found]
    except StoreUnavailable as exc:
        raise store_down(receiver, exc, ": cannot read the kept deliveries") from None


def _blanked(receiver: Receiver, entry: LogEntry) -> LogEntry:
    """``entry`` with its error and reason blanked (see the module's docstring)."""
    if not (entry.error or entry.reason):
        return entry
    secrets, masked = list(receiver.secrets), receiver.provider.redacted_fields
    stored = receiver.store.get(receiver.ns, entry.id) if masked and entry.id and entry.error else None
    if stored is not None:
        secrets += field_values(payload_of(stored.body, stored.headers, receiver.provider.parse), masked)
    return entry._replace(error=scrub(entry.error, secrets), reason=scrub(entry.reason, secrets))


def _as_json(receiver: Receiver, entry: LogEntry) -> str:
    excerpt = scrub(mask_excerpt(entry.excerpt, receiver.provider.redacted_fields), receiver.secrets)
    data = {"receiver": receiver.name, **entry._asdict(), "excerpt": excerpt}
    return json.dumps(data)


def _nothing_found(
    status: str | None, pattern: str | None, delivery_id: str | None, since: float | None
) -> str:
    named = (("status", status), ("type", pattern), ("id", delivery_id))
    filters = ", ".join(f"{name} {value!r}" for name, value in named if value is not None)
    message = "no deliveries" + (f" with {filters}" if filters else "")
    return message + (f" in the last {format_duration(since)}" if since is not None else "")


@cli.command("deliveries")
@click.option("--receiver", "receiver_name", metavar="NAME", help="Only this receiver (default: all).")
@click.option("--status", type=LogStatus(LOG_STATUSES + WORKER_STATUSES), help="Only this outcome.")
@click.option(
    "--type",
    "pattern",
    callback=pattern_option,
    metavar="PATTERN",
    help="Only these types, as handlers match (payment.*).",
)
@click.option(
    "--since", callback=duration_option, metavar="DURATION", help="Only the last DURATION (90s, 15m, 2h, 7d)."
)
@click.option("--id", "delivery_id", callback=text_option, metavar="ID", help="Only this delivery's lines.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def deliveries_command(
    receiver_name: str | None,
    status: str | None,
    pattern: str | None,
    since: float | None,
    delivery_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the delivery log, newest first: one line per attempt.

    SECRET is the position of the secret that matched (0 = newest): once
    no line shows 1 any more, the old secret can be removed. REASON names
    the handler that failed, with its exception.
    """
    found: list[tuple[Receiver, LogEntry]] = []
    for receiver in receivers_of(current_state(), receiver_name):
        entries = read_log(
            receiver, status=status, pattern=pattern, since=since, delivery_id=delivery_id, limit=limit
        )
        found.extend((receiver, entry) for entry in entries)
    found.sort(key=lambda item: item[1].received_at, reverse=True)
    found = found[:limit]
    if as_json:
        for receiver, entry in found:
            click.echo(_as_json(receiver, entry))
        return
    if not found:
        click.echo(_nothing_found(status, pattern, delivery_id, since))
        return
    table = [_HEADER] + [_format(entry, receiver.name) for receiver, entry in found]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*cells, line[-1]]).rstrip())
