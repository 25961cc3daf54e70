"""What a handler's return value means: success with a reply, or "not done"."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from wsgiref.util import is_hop_by_hop

from .errors import HookError
from .event import Event
from .routing import Route
from .store import Reply

log = logging.getLogger("flask_hooks")

#: A handler's reply (body and headers) larger than this is not stored (every
#: duplicate would get it again): the delivery is answered with the default body instead.
MAX_REPLY = 64 * 1024

#: Headers of a handler's response that are not its to keep: the Content-Type is
#: the reply's own field, framing and connection headers are the server's (a stored
#: Content-Length would be wrong for the body a duplicate gets; WSGI servers refuse
#: hop-by-hop ones, ``wsgiref.util.is_hop_by_hop``), and a cookie stored with the
#: delivery would be handed to every duplicate.
_NOT_KEPT = frozenset(
    {"content-type", "content-length", "proxy-connection", "trailer", "date", "server", "set-cookie"}
)

#: An HTTP field name (RFC 9110's token), and a value servers send: Latin-1 without
#: control characters but the tab (gunicorn's own rule; wsgiref refuses non-Latin-1).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")


def sendable(name: str, value: str) -> bool:
    """Whether a WSGI server can send this header: kept, one it cannot breaks the answer
    (and every duplicate's) inside the server, after the delivery was recorded as done."""
    return bool(_TOKEN.fullmatch(name) and _VALUE.fullmatch(value))


#: A reply's own headers beyond these are dropped (and logged): senders' clients refuse
#: more (Node's reads 16 KiB of headers, Python's http.client 100 of them).
MAX_REPLY_HEADERS = 50
MAX_REPLY_HEADER_BYTES = 8 * 1024


def reply_headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The headers of a handler's response that its reply keeps (``X-Slack-No-Retry``,
    ``Retry-After``), in order, repeated ones too; one no server can send
    (:func:`sendable`), or one past :data:`MAX_REPLY_HEADERS` or
    :data:`MAX_REPLY_HEADER_BYTES`, is dropped and logged."""
    kept: list[tuple[str, str]] = []
    size, over = 0, 0
    for name, value in pairs:
        # Werkzeug keeps a bytes or int name a handler's response set, as it was given.
        if not (isinstance(name, str) and isinstance(value, str)):
            dropped(name)
            continue
        lower = name.lower()
        if lower in _NOT_KEPT or is_hop_by_hop(lower):
            continue
        if not sendable(name, value):
            dropped(name)
            continue
        size += len(name) + len(value) + 4  # ": " and CRLF
        if len(kept) < MAX_REPLY_HEADERS and size <= MAX_REPLY_HEADER_BYTES:
            kept.append((name, value))
        else:
            over += 1
    if over:
        log.warning(
            "a handler's response had %d headers past the %d (%d bytes) a reply keeps: dropped",
            over,
            MAX_REPLY_HEADERS,
            MAX_REPLY_HEADER_BYTES,
        )
    return tuple(kept)


def dropped(name: object) -> None:
    """Say that a handler's response header was left out: by its name only, and only a name
    that is a plain token (a value may be a credential, and so may a malformed name's text)."""
    shown = name if isinstance(name, str) and _TOKEN.fullmatch(name) else "(a malformed name)"
    log.warning("a handler's response header %.40r cannot be sent: dropped", shown)


def declined_reply(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A "not done" answer of ``status`` with the JSON body an error gets, for one whose own
    body is not answered (``abort(422)``'s page quotes its description, often exception text;
    a body past :data:`MAX_REPLY`; a stream that broke off)."""
    body = json.dumps({"status": "error", "reason": f"handler answered {status}"}).encode()
    return Reply(status, body, "application/json", headers)


def reply_content_type(content_type: str) -> str:
    """The Content-Type a reply is answered with: its own, or without the parameters a
    server cannot send (``text/plain; title=caf\u00e9 \u2014 menu``), or none."""
    if sendable("Content-Type", content_type):
        return content_type
    bare = content_type.partition(";")[0].strip()
    return bare if sendable("Content-Type", bare) else ""


class Declined(HookError):
    """A handler returned a non-2xx response: it did not do its work.

    Nothing is recorded as done and the claim is released, so the sender
    retries; its own status and body are answered (a body over
    :data:`MAX_REPLY`, the error body). A 3xx is never answered (senders
    treat a redirect as a permanent failure), nor a status HTTP does not have (600 and
    over, which werkzeug would send as given): each is a 500.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.status = reply.status if 400 <= reply.status < 600 else 500
        super().__init__(f"handler answered {reply.status}")


def refuse_not_done(reply: Reply | None) -> None:
    """Raise :class:`Declined` for a non-2xx reply: the handler says it did not do its work,
    whether it ran in the request or in a queue's worker."""
    if reply is not None and not 200 <= reply.status < 300:
        if _size(reply) > MAX_REPLY:  # as a success's is not kept
            log.error("a handler's %d reply is over %d bytes: sent the error body", reply.status, MAX_REPLY)
            reply = declined_reply(reply.status, reply.headers)
        raise Declined(reply)


def accepted(route: Route, event: Event, reply: Reply | None) -> Reply | None:
    """A handler's rendered reply as recorded for its success (None: the default body).

    Raises :class:`Declined` for a non-2xx reply. A reply over
    :data:`MAX_REPLY` is logged and replaced by the default body: the
    handler's side effects happened, so it must count as done.
    """
    refuse_not_done(reply)
    if reply is None:
        return None
    size = _size(reply)
    if size > MAX_REPLY:
        log.error(
            "handler %s returned %d bytes for %s (more than %d): answered with the default body",
            route.name,
            size,  # of a streamed body, what was read: it stops just past the cap
            event.id,
            MAX_REPLY,
        )
        return None
    return reply


def _size(reply: Reply) -> int:
    return len(reply.body) + sum(len(name) + len(value) for name, value in reply.headers)


def first_reply(routes: Sequence[Route], replies: Mapping[str, Reply | None]) -> Reply | None:
    """The answer of a delivery: the first matching handler's non-default reply."""
    for route in routes:
        reply = replies.get(route.name)
        if reply is not None:
            return reply
    return None
