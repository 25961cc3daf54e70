"""``flask hooks ...``: inspect receivers, forge deliveries, read the log.

``send`` (:mod:`flask_hooks.send_cli`) plays the provider's "send test
event" button against a running server. The inbox commands (``show``,
``forget``, ``purge``) live in :mod:`flask_hooks.inbox_cli` and ``replay``
in :mod:`flask_hooks.replay_cli`, on the same group; the helpers they share (picking receivers, durations,
printing untrusted text) are here.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import re
import sys
import time
import traceback
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .core.attempts import exception_line
from .core.errors import ConfigError, StoreUnavailable
from .core.inbox import is_text, mask_excerpt, type_matches
from .core.routing import check_pattern
from .core.scrub import scrub
from .core.store import LogEntry
from .extension import HooksState, Receiver, get_state
from .stores.url import masked_url


class _Printable(logging.Filter):
    """Escapes what the ``flask_hooks`` logger writes during a command: a handler's
    exception may quote a sender's bytes, and ``flask hooks replay`` logs it on the
    operator's terminal, which must not run them (``ESC[2J``, a window title)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = "\n".join(printable(line) for line in text.split("\n")), ()
        return True


def _escaped_logs() -> None:
    logger, shield = logging.getLogger("flask_hooks"), _Printable()
    logger.addFilter(shield)
    click.get_current_context().call_on_close(lambda: logger.removeFilter(shield))


def _encodable_output() -> None:
    """Text the output's encoding cannot carry is written escaped (``\\u20ac``), not raised.

    Senders choose ids, types and bodies: one ``€`` on a Latin-1 terminal, or an
    emoji in a Windows console redirected to a file, would end ``flask hooks
    deliveries`` in a ``UnicodeEncodeError`` for every operator until it is purged.
    """
    ctx = click.get_current_context()
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
            ctx.call_on_close(functools.partial(_strict_again, stream))


def _strict_again(stream: io.TextIOWrapper) -> None:
    with contextlib.suppress(ValueError):  # closed (a broken pipe): nothing more is written
        stream.reconfigure(errors="strict")


def _prepare() -> None:
    """Every command's output is safe to print: the log escaped, the streams lenient."""
    _escaped_logs()
    _encodable_output()


cli = AppGroup("hooks", help="Inspect and exercise webhook receivers.", callback=_prepare)

def current_app_object() -> Flask:
    """The app itself (not the proxy): what ``hooks.inbox(app)`` takes."""
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def current_state() -> HooksState:
    try:
        return get_state(current_app_object())
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


def pick_receiver(state: HooksState, name: str | None) -> Receiver:
    """The named receiver, or the only one; a usage error otherwise."""
    if name is not None:
        if name not in state.receivers:
            raise click.UsageError(f"no receiver named {name!r} (receivers: {known(state)})")
        return state.receivers[name]
    if len(state.receivers) == 1:
        return next(iter(state.receivers.values()))
    raise click.UsageError(f"this app has several receivers; choose one with --receiver ({known(state)})")


def known(state: HooksState) -> str:
    return ", ".join(sorted(state.receivers)) or "none"


def receivers_of(state: HooksState, name: str | None) -> list[Receiver]:
    """The named receiver, or all of them (commands that read default to every receiver)."""
    return [pick_receiver(state, name)] if name is not None else list(state.receivers.values())


def store_down(receiver: Receiver, exc: StoreUnavailable, what: str = "") -> click.ClickException:
    """The error for a store that cannot be reached; ``what`` says what was (not) done.

    The stores raise a bare :class:`StoreUnavailable` from the driver's error: its first
    line (``ConnectionError: Error 111 connecting to 127.0.0.1:6380. Connection refused.``)
    is what tells an operator a URL or a server is wrong. Later lines (SQLAlchemy's
    statement and parameters) are left out.
    """
    detail = "" if str(exc) == StoreUnavailable.reason else f" ({exc})"
    cause = exc.__cause__
    if not detail and cause is not None:
        first = next(iter(str(cause).strip().splitlines()), "")
        detail = f" ({type(cause).__name__}: {first[:200]})" if first else f" ({type(cause).__name__})"
    return click.ClickException(f"store unavailable for receiver {receiver.name!r}{detail}{what}")


@cli.command("routes")
def routes_command() -> None:
    """List receivers, URLs, providers and handlers.

    Each receiver's line gives its URL, provider, number of secrets and
    store; below it, each handler with its patterns, in the order they run.
    """
    state = current_state()
    if not state.receivers:
        click.echo("no receivers")
        return
    for receiver in state.receivers.values():
        settings = receiver.settings
        store = settings.store
        shown = masked_url(store) if isinstance(store, str) else type(store).__name__
        secrets = len(receiver.keys)
        click.echo(
            f"{receiver.name}  POST {settings.url}  provider={receiver.provider.name}"
            f"  secrets={secrets}  store={shown}"
        )
        routes = receiver.hooks.router.routes
        if not routes:
            click.echo("    (no handlers: every delivery is acknowledged as ignored)")
        for route in routes:
            deferred = "  [deferred]" if route.defer is not None else ""
            click.echo(f"    {route.name}  <-  {', '.join(route.patterns)}{deferred}")


# Durations, times and untrusted text -------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")  # not \d: "٣h" is no duration to type


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``7d`` -> seconds; ValueError for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, like 90s, 15m, 2h or 7d")
    return float(match[1]) * _UNITS[match[2]]


def format_duration(seconds: float) -> str:
    """The largest unit that shows ``seconds`` exactly: 7d, 90m, 45s."""
    for unit in "dhm":
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


#: The longest duration an option takes: 100 years (``--since 9999...d`` is a typo, not a filter).
MAX_DURATION = 36525 * 86400.0


def duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """The callback of every duration option: seconds, or a usage error that says the format."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if not seconds <= MAX_DURATION:  # inf, too
        raise click.BadParameter(f"{value!r} is too long: at most 100 years (36525d)", ctx, param)
    return seconds


def text_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The callback of options the store is searched by: a usage error for text that is not."""
    if value is not None and not is_text(value):
        raise click.BadParameter(f"{value!r} is not valid text (not UTF-8)", ctx, param)
    return value


def pattern_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--type``: a type, or a pattern as handlers take them (``pay*`` matched nothing, silently)."""
    if value is not None and not value.strip():
        raise click.BadParameter("give a type or a pattern, like payment.* or *", ctx, param)
    value = text_option(ctx, param, value)
    if value is not None and "*" in value:  # an exact type is found as kept, odd or not
        try:
            check_pattern(value)
        except ConfigError:
            raise click.BadParameter(
                f"{value!r} matches no type: '*' may only be a whole last part, like payment.* or *",
                ctx,
                param,
            ) from None
    return value


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp)) if timestamp else "-"


def printable(text: str) -> str:
    """``text`` with control characters escaped: senders' bytes never drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


# deliveries ------------------------------------------------------------------

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
    return [
        e
        for e in entries
        if type_matches(pattern, e.type or "")
        and (after is None or e.received_at >= after)
        and (delivery_id is None or e.id == delivery_id)
    ][:limit]


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


# send, show, replay, forget and purge register themselves on ``cli``.
from . import inbox_cli as inbox_cli  # noqa: E402
from . import replay_cli as replay_cli  # noqa: E402
from . import send_cli as send_cli  # noqa: E402
