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
import logging
import re
import sys
import time
import traceback

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .core.errors import ConfigError, StoreUnavailable
from .core.inbox import is_text
from .core.routing import check_pattern
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


# deliveries, send, show, replay, forget and purge register themselves on ``cli``.
from . import deliveries_cli as deliveries_cli  # noqa: E402
from . import inbox_cli as inbox_cli  # noqa: E402
from . import replay_cli as replay_cli  # noqa: E402
from . import send_cli as send_cli  # noqa: E402
