"""What a handler's return value means: success with a reply, or "not done"."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from .errors import HookError
from .event import Event
from .routing import Route
from .store import Reply

log = logging.getLogger("flask_hooks")

#: A handler's reply larger than this is not stored (every duplicate would get
#: it again): the delivery is answered with the default body instead.
MAX_REPLY = 64 * 1024


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
    if len(reply.body) > MAX_REPLY:
        log.error(
            "handler %s returned %d bytes for %s (more than %d): answered with the default body",
            route.name,
            len(reply.body),
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
