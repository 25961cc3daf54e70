"""The one place where an outcome becomes the sender's answer.

Status, headers and body for every row of the response table, provider
overrides included (the flow-step sender expects 400 for a bad
signature). Transports only copy the :class:`Answer` into their own
response type.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from .errors import HookError, VerificationError, _RetryLater
from .event import Event
from .providers.base import Provider
from .replies import reply_content_type, reply_headers
from .store import Reply

JSON = "application/json"

#: The fixed success bodies, serialised once.
_STATUS_BODIES = {
    kind: json.dumps({"status": kind}).encode() for kind in ("received", "ignored", "duplicate")
}


class Outcome(NamedTuple):
    """What happened to one request, for :func:`answer` to turn into a response.

    ``kind`` is the word in the response body (``received``, ``ignored``,
    ``duplicate``, ``rejected``, ``invalid``, ``in-flight``, ``error``,
    ``retry``, ``unavailable``); ``reply`` is a handler's (or a provider's)
    own answer; ``error`` carries the status and a sender-safe reason.
    """

    kind: str
    reply: Reply | None = None
    error: HookError | None = None
    event: Event | None = None


class Answer(NamedTuple):
    """What the sender receives; ``headers`` start with the Content-Type (a name may repeat)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def answer(outcome: Outcome, provider: Provider) -> Answer:
    """Map an outcome (its recorded reply, or its error) to the response."""
    reply = outcome.reply
    if reply is not None:
        # Checked again on the way out: a record kept by an older version may hold either.
        own = reply_headers(reply.headers) if reply.headers else ()
        kept = (("Content-Type", reply_content_type(reply.content_type) or JSON), *own)
        return Answer(reply.status, kept, reply.body)
    error = outcome.error
    if error is None:
        body = _STATUS_BODIES.get(outcome.kind) or json.dumps({"status": outcome.kind}).encode()
        return Answer(200, (("Content-Type", JSON),), body)
    # The provider's own status for a bad signature (flow-step expects 400), never for a 413.
    status = provider.rejection_status if isinstance(error, VerificationError) else error.status
    headers: tuple[tuple[str, str], ...] = (("Content-Type", JSON),)
    if error.after is not None:
        headers += (("Retry-After", str(error.after)),)
    body = json.dumps({"status": outcome.kind, "reason": safe_reason(error)}).encode()
    return Answer(status, headers, body)


def safe_reason(error: HookError) -> str:
    """The reason the sender is answered, and an attempt is logged with: our own fixed
    phrases. A bare HookError from a handler says nothing more, and a Retry's words (a
    handler's, which may quote what it was given) stay in its error text."""
    if isinstance(error, _RetryLater):
        return type(error).reason
    return error.reason if type(error) is not HookError else "handler failed"
