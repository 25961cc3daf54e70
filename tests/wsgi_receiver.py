"""A receiver on the sans-I/O core alone: plain WSGI, no Flask, no werkzeug.

It shows the whole boundary: the transport reads the body (413 before
reading), hands headers and bytes to the :class:`Pipeline`, renders a
handler's return value, and copies the :func:`answer` into a response.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from flask_hooks.core.answer import answer
from flask_hooks.core.errors import BodyTooLarge, PayloadError
from flask_hooks.core.event import Event, Headers
from flask_hooks.core.pipeline import Pipeline
from flask_hooks.core.routing import Route
from flask_hooks.core.store import Reply

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def render(route: Route, event: Event) -> Reply | None:
    value = route.func(event)
    if value is None or isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(200, value.encode(), "text/html; charset=utf-8")
    return Reply(200, json.dumps(value).encode() + b"\n")


def make_app(
    pipeline: Pipeline, *, max_body: int
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            start_response(
                "405 Method Not Allowed", [("Content-Type", "application/json"), ("Allow", "POST")]
            )
            return [b'{"status": "method not allowed"}']
        headers = Headers((k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_"))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > max_body:
            outcome = pipeline.refuse(BodyTooLarge())
        else:
            body = environ["wsgi.input"].read(length)
            outcome = (
                pipeline.refuse(PayloadError("body shorter than Content-Length"))
                if len(body) != length
                else pipeline.process(headers, body, run=render)
            )
        status, response_headers, data = answer(outcome, pipeline.config.provider)
        start_response(f"{status} {_REASONS.get(status, '')}", list(response_headers))
        return [data]

    return app
