"""``flask hooks ...``: inspect receivers, forge deliveries, read the log.

``send`` plays the provider's "send test event" button against a running
server: it signs with the receiver's own provider and newest secret, so
what it posts is exactly what the real sender would.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .core.errors import HookError, StoreUnavailable
from .core.providers.base import Outgoing
from .extension import HooksState, Receiver, get_state
from .stores.base import LogEntry

cli = AppGroup("hooks", help="Inspect and exercise webhook receivers.")

DEFAULT_SERVER = "http://127.0.0.1:5000"


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def _state() -> HooksState:
    try:
        return get_state(_app())
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


def pick_receiver(state: HooksState, name: str | None) -> Receiver:
    """The named receiver, or the only one; a usage error otherwise."""
    if name is not None:
        if name not in state.receivers:
            known = ", ".join(sorted(state.receivers)) or "none"
            raise click.UsageError(f"no receiver named {name!r} (receivers: {known})")
        return state.receivers[name]
    if len(state.receivers) == 1:
        return next(iter(state.receivers.values()))
    known = ", ".join(sorted(state.receivers)) or "none"
    raise click.UsageError(f"this app has several receivers; choose one with --receiver ({known})")


@cli.command("routes")
def routes_command() -> None:
    """List receivers, URLs, providers and handlers.

    Each receiver's line gives its URL, provider, number of secrets and
    store; below it, each handler with its patterns, in the order they run.
    """
    state = _state()
    if not state.receivers:
        click.echo("no receivers")
        return
    for receiver in state.receivers.values():
        settings = receiver.settings
        store = settings.store if isinstance(settings.store, str) else type(settings.store).__name__
        secrets = len(receiver.keys)
        click.echo(
            f"{receiver.name}  POST {settings.url}  provider={receiver.provider.name}"
            f"  secrets={secrets}  store={store}"
        )
        routes = receiver.hooks.router.routes
        if not routes:
            click.echo("    (no handlers: every delivery is acknowledged as ignored)")
        for route in routes:
            deferred = "  [deferred]" if route.defer is not None else ""
            click.echo(f"    {route.name}  <-  {', '.join(route.patterns)}{deferred}")


def load_data(data: str | None) -> Any:
    """``--data``: inline JSON, or ``@path`` to a JSON file."""
    if data is None:
        return {}
    where = "--data"
    text = data
    if data.startswith("@"):
        path = Path(data[1:])
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or exc
            raise click.BadParameter(f"cannot read {path}: {reason}", param_hint="--data") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{where} is not valid JSON: {exc}", param_hint="--data") from None


def target_url(receiver: Receiver, url: str | None) -> str:
    """``--url`` as given, or the receiver's path on it when it names only a server."""
    base = url or DEFAULT_SERVER
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise click.BadParameter(f"{base!r} is not an http(s) URL", param_hint="--url")
    if parts.path in {"", "/"}:
        return base.rstrip("/") + receiver.settings.url
    return base


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Senders do not follow redirects, so neither does ``send``: a 3xx is the answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@cli.command("send")
@click.argument("type")
@click.option("--data", "data", metavar="JSON|@FILE", help="The payload: inline JSON or @path to a file.")
@click.option("--receiver", "receiver_name", metavar="NAME", help="Which receiver (if the app has several).")
@click.option("--url", metavar="URL", help=f"Server or full URL to post to (default {DEFAULT_SERVER}).")
@click.option("--id", "delivery_id", metavar="ID", help="Delivery id (default: a fresh one).")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for an answer.")
def send_command(
    type: str,
    data: str | None,
    receiver_name: str | None,
    url: str | None,
    delivery_id: str | None,
    timeout: float,
) -> None:
    """POST a correctly signed TYPE delivery to a running server.

    Signs with the receiver's provider and its newest secret, like the
    provider's "send test event" button. Prints the status and body;
    exits 1 when the answer is not 2xx. Reuse --id to see deduplication.
    """
    payload = load_data(data)
    receiver = pick_receiver(_state(), receiver_name)
    target = target_url(receiver, url)
    delivery_id = delivery_id or f"evt_{uuid.uuid4().hex}"
    key = receiver.keys[0] if receiver.keys else b""
    try:
        signed = receiver.provider.sign(Outgoing(type, payload, delivery_id, int(receiver.now())), key)
    except (HookError, ValueError, TypeError) as exc:
        raise click.ClickException(f"{receiver.provider.name} cannot sign this delivery: {exc}") from None
    request = urllib.request.Request(target, data=signed.body, headers=signed.headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"could not reach {target}: {reason}. Is the app running (flask run) and is --url right?"
        ) from None
    click.echo(f"POST {target}  id={delivery_id}  type={type}")
    click.echo(f"{status}  {body.decode('utf-8', 'replace').rstrip()}")
    if not 200 <= status < 300:
        raise SystemExit(1)


def _format(entry: LogEntry, receiver: str) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.received_at)) if entry.received_at else "-"
    secret = "-" if entry.secret_index is None else str(entry.secret_index)
    return [
        when,
        receiver,
        entry.id or "-",
        entry.type or "-",
        entry.status,
        str(entry.code),
        secret,
        f"{entry.duration * 1000:.1f}",
        ",".join(entry.handlers) or "-",
        entry.reason or "",
    ]


_HEADER = ["RECEIVED (UTC)", "RECEIVER", "ID", "TYPE", "STATUS", "CODE", "SECRET", "MS", "HANDLERS", "REASON"]


@cli.command("deliveries")
@click.option("--receiver", "receiver_name", metavar="NAME", help="Only this receiver (default: all).")
@click.option("--status", metavar="STATUS", help="Only this outcome (received, duplicate, rejected, ...).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def deliveries_command(receiver_name: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Show the delivery log, newest first.

    SECRET is the position of the secret that matched (0 = newest): once
    no line shows 1 any more, the old secret can be removed.
    """
    state = _state()
    receivers = [pick_receiver(state, receiver_name)] if receiver_name else list(state.receivers.values())
    found: list[tuple[str, LogEntry]] = []
    for receiver in receivers:
        try:
            entries = receiver.store.deliveries(receiver.ns, status=status, limit=limit)
        except StoreUnavailable as exc:
            message = f"cannot read the delivery log of {receiver.name!r}: {exc.reason}"
            raise click.ClickException(message) from None
        found.extend((receiver.name, entry) for entry in entries)
    found.sort(key=lambda item: item[1].received_at, reverse=True)
    if as_json:
        for name, entry in found[:limit]:
            click.echo(json.dumps({"receiver": name, **entry._asdict()}))
        return
    rows = [(entry.received_at, _format(entry, name)) for name, entry in found]
    if not rows:
        click.echo("no deliveries" + (f" with status {status!r}" if status else ""))
        return
    table = [_HEADER] + [row for _, row in rows[:limit]]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*cells, line[-1]]).rstrip())
