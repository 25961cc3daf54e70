"""What a handler's return value means: success with a reply, or "not done"."""

from __future__ import annotations

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

#: An HTTP field name (RFC 9110's token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def reply_headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The headers of a handler's response that its reply keeps (``X-Slack-No-Retry``,
    ``Retry-After``), in order, repeated ones too.

    One a WSGI server cannot send (a name that is no token, a value outside
    Latin-1 such as an em dash) is dropped and logged: kept, it would break
    the first answer and every duplicate's in the server, after the delivery
    was recorded as done.
    """
    kept = []
    for name, value in pairs:
        lower = name.lower()
        if lower in _NOT_KEPT or is_hop_by_hop(lower):
            continue
        if _TOKEN.fullmatch(name) and _latin1(value):
            kept.append((name, value))
        else:
            log.warning("a handler's response header %.40r cannot be sent (not Latin-1): dropped", name)
    return tuple(kept)


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class Declined(HookError):
    """A handler returned a non-2xx response: it did not do its work.

    Nothing is recorded as done and the claim is released, so the sender
    retries; its own status and body are answered. A 3xx is never
    answered (senders treat a redirect as a permanent failure): it is a 500.
    """

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.status = reply.status if reply.status >= 400 else 500
        super().__init__(f"handler answered {reply.status}")


def refuse_not_done(reply: Reply | None) -> None:
    """Raise :class:`Declined` for a non-2xx reply: the handler says it did not do its work,
    whether it ran in the request or in a queue's worker."""
    if reply is not None and not 200 <= reply.status < 300:
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
    size = len(reply.body) + sum(len(name) + len(value) for name, value in reply.headers)
    if size > MAX_REPLY:
        log.error(
            "handler %s returned %d bytes for %s (more than %d): answered with the default body",
            route.name,
            size,
            event.id,
            MAX_REPLY,
        )
        return None
    return reply


def first_reply(routes: Sequence[Route], replies: Mapping[str, Reply | None]) -> Reply | None:
    """The answer of a delivery: the first matching handler's non-default reply."""
    for route in routes:
        reply = replies.get(route.name)
        if reply is not None:
            return reply
    return None
