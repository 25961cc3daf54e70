"""``flask hooks show|forget|purge``: the delivery inbox from a shell.

Registered on the ``hooks`` group of :mod:`flask_hooks.cli`, with
``replay`` (:mod:`flask_hooks.replay_cli`), which shares the lookups and
options defined here. Everything
printed goes through :meth:`~flask_hooks.inbox.Delivery.shown_payload`
and the headers as stored (credentials redacted), never the raw payload.
A command that fails says why on stderr and exits non-zero; a store that
cannot be reached is reported before anything is changed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator
from typing import Any

import click

from .cli import (
    cli,
    current_app_object,
    current_state,
    duration_option,
    format_duration,
    known,
    printable,
    receivers_of,
    store_down,
    when,
)
from .core.attempts import exception_line
from .core.errors import InFlight, StoreUnavailable
from .core.inbox import is_text
from .core.scrub import scrub
from .extension import HooksState, Receiver
from .inbox import MASK, Delivery, Inbox, hidden

RECEIVER_OPTION = click.option(
    "--receiver", "receiver_name", metavar="NAME", help="Which receiver (default: the one that keeps ID)."
)


def inbox_of(receiver: Receiver) -> Inbox:
    return receiver.hooks.inbox(current_app_object())


def holders(
    state: HooksState, id: str, name: str | None, *, undone: str = ": nothing was changed"
) -> list[tuple[Receiver, Delivery]]:
    """The receivers (the named one, or all) that keep a delivery ``id``, with it.

    ``undone`` ends the error for a store that cannot be read: what the command did not do.
    """
    found = []
    for receiver in receivers_of(state, name) if is_text(id) else ():
        try:
            delivery = inbox_of(receiver).get(id)
        except StoreUnavailable as exc:
            raise store_down(receiver, exc, undone) from None
        if delivery is not None:
            found.append((receiver, delivery))
    if len(found) > 1:
        names = ", ".join(receiver.name for receiver, _ in found)
        raise click.UsageError(f"receivers {names} all keep a delivery {id!r}; choose one with --receiver")
    return found


def unknown(state: HooksState, id: str, name: str | None) -> str:
    where = f"receiver {name!r}" if name is not None else f"any receiver ({known(state)})"
    return f"no delivery {id!r} is kept by {where}"


def find(id: str, name: str | None, *, undone: str = ": nothing was changed") -> tuple[Receiver, Delivery]:
    state = current_state()
    found = holders(state, id, name, undone=undone)
    if not found:
        raise click.ClickException(unknown(state, id, name))
    return found[0]


# show ------------------------------------------------------------------------------


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} does not fit a float")
    return number


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def is_json(body: bytes) -> bool:
    """Whether the body is strict JSON (no NaN, no number that overflows a float): shown parsed.

    Any other body is shown as text, so ``--json`` never prints ``Infinity``.
    """
    try:
        json.loads(body, parse_float=_finite, parse_constant=_constant)
    except (ValueError, RecursionError):
        return False
    return True


def shown_body(delivery: Delivery, secrets: Collection[str] = ()) -> str:
    """The body for people: pretty JSON with credentials masked and ``secrets``
    (:func:`~flask_hooks.inbox.hidden`) blanked, or escaped text."""
    if not delivery.body:
        return "(empty)"
    if is_json(delivery.body) or delivery.form is not None:
        return json.dumps(delivery.shown_payload(secrets), indent=2, ensure_ascii=False)
    if delivery.masked:  # fields to mask in a body that cannot be parsed: show none of it
        return f"{MASK} (not JSON, so {', '.join(delivery.masked)} cannot be masked)"
    return scrub(delivery.body.decode("utf-8", "backslashreplace"), secrets)


def describe(delivery: Delivery, secrets: Collection[str] = ()) -> Iterator[str]:
    d = delivery
    secret = "-" if d.secret_index is None else str(d.secret_index)
    yield f"{printable(d.id)}  {printable(d.type)}  {d.status}"
    yield f"receiver {d.receiver}  received {when(d.received_at)} UTC  secret {secret}"
    yield "headers:"
    yield from (f"  {printable(name)}: {printable(value)}" for name, value in d.headers)
    yield "body:"
    yield from (f"  {printable(line)}" for line in shown_body(d, secrets).split("\n"))  # not at U+2028
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
        if a.error:  # an earlier attempt may have failed differently
            yield f"     {printable(exception_line(a.error))}"
    errors = [(number, a) for number, a in enumerate(d.attempts, 1) if a.error]
    if errors:
        number, last = errors[-1]
        yield f"last error (attempt {number}{f', {last.failed}' if last.failed else ''}):"
        yield from (f"  {printable(line)}" for line in last.error.rstrip().splitlines())


def as_document(delivery: Delivery, secrets: Collection[str] = ()) -> dict[str, Any]:
    d, parsed = delivery, is_json(delivery.body) or delivery.form is not None
    body = None if parsed or not d.body else shown_body(d, secrets)
    return {
        "receiver": d.receiver,
        "id": d.id,
        "type": d.type,
        "status": d.status,
        "received_at": d.received_at,
        "secret_index": d.secret_index,
        "headers": [list(pair) for pair in d.headers],
        "payload": d.shown_payload(secrets) if parsed else None,
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
    receiver, delivery = find(delivery_id, receiver_name, undone="")
    secrets = hidden(delivery, receiver.secrets)  # wherever the body quotes them
    if as_json:
        click.echo(json.dumps(as_document(delivery, secrets), allow_nan=False))
        return
    for line in describe(delivery, secrets):
        click.echo(line)


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
        removed = is_text(delivery_id) and inbox_of(receiver).forget(delivery_id)
    except StoreUnavailable as exc:
        raise store_down(receiver, exc, ": nothing was forgotten") from None
    except InFlight:
        raise click.ClickException(
            f"{delivery_id!r} is in flight (a sender's retry or a replay holds it): nothing was forgotten;"
            " try later"
        ) from None
    if not removed:
        raise click.ClickException(unknown(state, delivery_id, receiver.name))
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
        noun = "delivery" if removed == 1 else "deliveries"
        click.echo(f"{receiver.name}: purged {removed} {noun} received more than {age} ago")
        ttl = receiver.settings.dedupe_ttl
        if removed and older_than < ttl:
            click.echo(
                f"warning: {age} is less than the dedupe TTL ({format_duration(ttl)}) of {receiver.name!r}:"
                " a redelivery of a purged delivery runs its handlers again",
                err=True,
            )
