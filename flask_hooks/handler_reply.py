"""A handler's return value made a storable reply, in a request, a replay or a queue's worker.

What a duplicate is answered is what the first delivery's handler
returned, so a reply is built once, bounded, and kept with the completion.
A reply that cannot be built counts as the handler's success (its side
effects happened); one that says "not done" (a non-2xx status) must stay
that, even when some of its headers cannot be sent.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Response, current_app
from werkzeug.datastructures import Headers, MultiDict, iter_multi_items
from werkzeug.exceptions import Aborter, HTTPException

from .core.attempts import log_failure
from .core.event import Event
from .core.replies import MAX_REPLY, declined_reply, dropped, reply_content_type, reply_headers
from .core.routing import Route
from .extension import get_state
from .stores.base import Reply

log = logging.getLogger("flask_hooks")


def call_handler(route: Route, event: Event) -> object:
    """What the handler returns, in the request or in a queue's worker: ``flask.abort()``
    taken as its answer (``abort(422)`` a :class:`Reply`, ``abort(response)`` that
    response), any other werkzeug error raised as the failure it is, and a coroutine
    refused (an ``async def``'s, handed back: none of its work ran)."""
    try:
        value = route.func(event)
    except HTTPException as exc:
        if not _by_abort(exc):  # werkzeug's own (request.form["missing"]): a bug, a 500
            raise
        return aborted(exc) if exc.response is None else exc.response
    if inspect.iscoroutine(value):
        value.close()
        raise TypeError(f"handler {route.name} returned a coroutine, which never runs: return its reply")
    return value


def run(route: Route, event: Event) -> Reply | None:
    """Run one handler and build its reply: the pipeline's ``run`` for requests and replays."""
    value = call_handler(route, event)
    if isinstance(value, Reply):  # abort(422)
        return value
    # The handler did its work: a reply we cannot build or keep must not make the sender
    # retry it (and repeat its side effects).
    try:
        return render(value)
    except _TooLarge:
        log.error(
            "handler %s streamed a body past the cap (%d bytes, or as many chunks) for %s:"
            " answered with the default body",
            route.name,
            MAX_REPLY,
            event.id,
        )
    except Exception as exc:
        # A stream's own code raised: its traceback may quote what the handler knew.
        receiver = get_state(current_app).receivers.get(event.receiver)
        secrets = receiver.credentials(event) if receiver is not None else []
        message = f"handler {route.name} returned {type(value)!r}, whose reply could not be built"
        log_failure(f"{message}: answered with the default body", exc, secrets)
    return None


def render(value: object) -> Reply | None:
    """A handler's return value as a storable reply (None: the default body).

    A dict or list (alone, or with a status) is JSON written like the fixed
    bodies (``{"status": "received"}``), through the app's JSON provider;
    anything else is what Flask makes of it, with the headers
    :func:`~flask_hooks.core.replies.reply_headers` keeps. A 2xx whose body
    cannot be read raises; a non-2xx's status stands whatever its body.
    """
    if value is None:
        return None
    data, status = value, 200
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        data, status = value
    if isinstance(data, (dict, list)):
        return Reply(status, current_app.json.dumps(data).encode(), "application/json")
    response = _response(value)
    headers = reply_headers(response.headers.items())
    content_type = reply_content_type(response.content_type or "")
    try:
        body = _bounded_body(response)
    except Exception as exc:
        if 200 <= response.status_code < 300:
            raise  # the handler's success, with the default body (see run)
        # "Not done" whatever its body: it stays so, and is never answered cut off.
        # Without its traceback, which may quote what the handler knew (no secrets to blank here).
        why = "is over the size cap" if isinstance(exc, _TooLarge) else f"broke off ({type(exc).__name__})"
        log.error("a handler's %d reply %s: answered with the error body", response.status_code, why)
        return declined_reply(response.status_code, headers)
    return Reply(response.status_code, body, content_type, headers)


def _response(value: object) -> Response:
    """Flask's response for ``value``; a header werkzeug refuses (a newline in a value, a
    name that is not text, a malformed pair) is dropped, not the whole reply, which would
    make a "not done" ``("busy", 503, {...})`` a success, never retried."""
    if isinstance(value, tuple) and len(value) == 3 and _other_iterable(value[2]):
        value = (*value[:2], list(value[2]))  # read once, or a second try would find it empty
    try:
        return current_app.make_response(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):  # AttributeError: werkzeug lowers an int name
        given = value[-1] if isinstance(value, tuple) and len(value) in (2, 3) else None
        if not isinstance(value, tuple) or not isinstance(given, (Headers, Mapping, tuple, list)):
            raise
    return current_app.make_response((*value[:-1], _sendable(given)))


def _other_iterable(headers: object) -> bool:
    """Headers Flask takes that are no list or mapping (``dict.items()``, a set, a generator)."""
    listed = (str, bytes, Mapping, Headers, tuple, list)
    return isinstance(headers, Iterable) and not isinstance(headers, listed)


def _sendable(given: Any) -> Headers | dict[str, list[str]] | list[tuple[str, str]]:
    """``given``'s headers but those werkzeug refuses, in a container of its kind: Flask
    merges a list's pairs into a response one by one (the last of a name wins), a mapping's
    by name with all its values."""
    probe = Headers()  # werkzeug's own checks, as each header is added
    for item in iter_multi_items(given):
        try:
            name, each = item
            if not isinstance(name, str):
                raise TypeError(name)
            probe.add(name, each)
        except (ValueError, TypeError):
            dropped(item[0] if isinstance(item, tuple) and len(item) == 2 else None)
    if isinstance(given, (Headers, MultiDict)):
        return probe
    if isinstance(given, Mapping):  # a dict, or any mapping (werkzeug reads both alike)
        merged: dict[str, list[str]] = {}
        for name, each in probe.items():
            merged.setdefault(name, []).append(each)
        return merged
    return list(probe.items())


class _TooLarge(Exception):
    """A streamed body past :data:`MAX_REPLY`, in bytes or in chunks: read no further."""


def _bounded_body(response: Response) -> bytes:
    """The response's body, then closed as a server closes what it sent (its
    ``call_on_close``, a generator's clean-up, a file). A streamed one could be
    endless: past :data:`MAX_REPLY` bytes or as many chunks, :class:`_TooLarge`."""
    try:
        if not response.is_streamed:
            return response.get_data()
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_encoded():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY or len(chunks) > MAX_REPLY:
                raise _TooLarge()
        return b"".join(chunks)
    finally:
        response.close()


def _by_abort(exc: HTTPException) -> bool:
    """Whether ``flask.abort()`` raised ``exc`` (werkzeug's ``Aborter``, in the frame that
    raised it), rather than werkzeug reading the request (a missing form key's
    ``BadRequestKeyError``, ``get_json``'s 415): a handler's choice, not its bug, whose 4xx
    some senders would take as final."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is Aborter.__call__.__code__


def aborted(exc: HTTPException) -> Reply:
    """What a handler's ``flask.abort(status)`` answers: that status, as a return value would.

    ``abort(422)`` is the handler's "not done", like ``return "...", 422``:
    the claim is released and the sender retries. Werkzeug's page for it
    would quote the ``description`` (often exception text) in HTML, so the
    body is the JSON an error gets.
    """
    # Werkzeug's headers for it: abort(503, retry_after=30)'s Retry-After.
    return declined_reply(exc.code or 500, reply_headers(exc.get_headers()))
