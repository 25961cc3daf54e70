"""The thin Flask layer: size check, read the bytes once, Outcome -> Response.

:func:`respond` is the one place where errors become responses.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Flask, Response, current_app, request

from . import signals
from .core.errors import BodyTooLarge, HookError, _RetryLater
from .core.event import Event, Headers
from .core.pipeline import Outcome
from .core.providers import Provider
from .core.routing import Route
from .extension import Receiver, get_receiver
from .stores.base import Reply

_SIGNALS = {
    "delivery_received": signals.delivery_received,
    "delivery_verified": signals.delivery_verified,
    "delivery_rejected": signals.delivery_rejected,
    "delivery_duplicate": signals.delivery_duplicate,
    "event_handled": signals.event_handled,
    "event_ignored": signals.event_ignored,
    "handler_failed": signals.handler_failed,
}


def add_url_rules(app: Flask, receiver: Receiver) -> None:
    """Route the URL with and without a trailing slash, never redirecting.

    Senders count a 3xx as a failure (some as a permanent one), so neither
    the slash nor doubled slashes may produce a redirect.
    """
    base = receiver.settings.url.rstrip("/")
    view = functools.partial(receive, receiver.name)
    rules = [base, base + "/"] if base else ["/"]
    for suffix, rule in zip(("", ".slash"), rules, strict=False):
        app.add_url_rule(
            rule,
            endpoint=f"flask_hooks.{receiver.name}{suffix}",
            view_func=view,
            methods=["POST"],
            strict_slashes=False,
            merge_slashes=False,
            provide_automatic_options=False,
        )


def receive(_receiver: str) -> Response:
    """The view: everything but reading the body is the core's job."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    receiver = get_receiver(app, _receiver)
    try:
        body = _read_body(receiver.settings.max_body)
    except BodyTooLarge as exc:
        signals.delivery_rejected.send(app, receiver=receiver.name, reason=exc.reason)
        return respond(Outcome("rejected", exc.status, error=exc), receiver.provider)

    def notify(name: str, **kwargs: Any) -> None:
        _SIGNALS[name].send(app, **kwargs)

    def run(route: Route, event: Event) -> Reply | None:
        return render(route.func(event))

    outcome = receiver.process(Headers(request.headers.items()), body, run=run, notify=notify)
    return respond(outcome, receiver.provider)


def _read_body(limit: int) -> bytes:
    """The 413 comes from Content-Length before reading, or while streaming.

    Werkzeug's own ``max_content_length`` silently truncates a chunked
    body at the limit, so the stream is read here with ``limit + 1``.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    stream = request.stream
    first = stream.read(limit + 1)
    chunks = [first]
    size = len(first)
    while first and size <= limit:
        first = stream.read(limit + 1 - size)
        chunks.append(first)
        size += len(first)
    if size > limit:
        raise BodyTooLarge()
    return chunks[0] if len(chunks) <= 2 and not chunks[-1] else b"".join(chunks)


def render(value: object) -> Reply | None:
    """A handler's return value as a storable reply (None: the default body)."""
    if value is None:
        return None
    response = current_app.make_response(value)  # type: ignore[arg-type]
    return Reply(response.status_code, response.get_data(), response.content_type or "")


def _json(data: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def respond(outcome: Outcome, provider: Provider) -> Response:
    """Map an outcome (and its error, if any) to the sender-facing response."""
    if outcome.extra is not None:
        return current_app.make_response(outcome.extra)
    if outcome.reply is not None:
        reply = outcome.reply
        return Response(reply.body, status=reply.status, content_type=reply.content_type)
    error = outcome.error
    if error is None:
        return _json({"status": outcome.kind}, 200)
    status = provider.rejection_status if outcome.kind == "rejected" and error.status == 401 else error.status
    response = _json({"status": outcome.kind, "reason": _safe_reason(error)}, status)
    if isinstance(error, _RetryLater):
        response.headers["Retry-After"] = str(error.after)
    return response


def _safe_reason(error: HookError) -> str:
    # Reasons are our own fixed phrases; a bare HookError from a handler says nothing more.
    return error.reason if type(error) is not HookError else "handler failed"
