"""One exception hierarchy; ``flask_hooks.view`` maps each to a response.

Every error carries the HTTP ``status`` a sender should see and a short,
sender-safe ``reason``. Exception text never reaches a response.
"""

from __future__ import annotations

from datetime import timedelta


class HookError(Exception):
    """Base class of every flask-hooks error."""

    status: int = 500
    reason: str = "error"
    #: Seconds for a ``Retry-After`` header; None for errors that send none.
    after: int | None = None

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)


class ConfigError(HookError):
    """A receiver is set up wrongly; raised at ``init_app``, never per request."""


class VerificationError(HookError):
    """The signature, token or timestamp did not check out (401)."""

    status = 401
    reason = "invalid signature"


class PayloadError(HookError):
    """The body was verified but is not an event we can read (400)."""

    status = 400
    reason = "invalid payload"


class PayloadTooDeep(PayloadError):
    """A deferred handler's job could not be serialized for its queue: the payload is nested
    past the recursion limit of a serializer that runs deeper in the stack than the parser
    did. The same on every retry, so a 400, not a 503."""

    reason = "invalid payload: nested too deeply for the queue"


class BodyTooLarge(HookError):
    """The body is larger than ``max_body`` (413)."""

    status = 413
    reason = "body too large"


#: The longest ``Retry-After`` asked for, in seconds (a week); a longer delay is this one.
MAX_AFTER = 7 * 86400


class _RetryLater(HookError):
    """Errors that tell the sender to come back after ``after`` seconds.

    ``after`` (seconds, or a :class:`~datetime.timedelta`) is answered as whole
    seconds, at least 1 and at most :data:`MAX_AFTER`; one that is no number
    (NaN, ``None``) leaves the class's own: raised from a handler, a bad
    delay must not turn its 503 into a 500.
    """

    after: int | None = 1

    def __init__(self, reason: str | None = None, *, after: float | timedelta | None = None) -> None:
        super().__init__(reason)
        if isinstance(after, timedelta):
            after = after.total_seconds()
        try:
            seconds = float(after)  # type: ignore[arg-type]
        except OverflowError:  # an int past float's range
            seconds = MAX_AFTER
        except (TypeError, ValueError):
            return
        if seconds == seconds:  # not NaN
            self.after = max(1, int(min(max(seconds, 0), MAX_AFTER) + 0.999))


class InFlight(_RetryLater):
    """The same delivery is being handled by another worker (409)."""

    status = 409
    reason = "delivery in flight"


class Retry(_RetryLater):
    """Raise from a handler to ask the sender to retry later (503).

    The claim is released so the retry runs the handler again::

        raise Retry(after=30)
    """

    status = 503
    reason = "retry later"
    after = 30

    def __init__(self, reason: str | None = None, *, after: float | timedelta = 30) -> None:
        super().__init__(reason, after=after)


class StoreUnavailable(_RetryLater):
    """The dedupe store could not be reached; never acknowledge without it (503)."""

    status = 503
    reason = "store unavailable"
    after = 5


class RecordUnreadable(StoreUnavailable):
    """One stored record cannot be read (damaged, or written by a newer version).

    The store answered: what else it holds can still be shown (the
    dashboard keeps asking it for other receivers).
    """


class QueueUnavailable(_RetryLater):
    """A deferred handler could not be handed to its task queue (503).

    The claim is released and nothing is acknowledged, so the sender's
    retry enqueues it again once the broker is back.
    """

    status = 503
    reason = "queue unavailable"
    after = 5


class LeaseLost(InFlight):
    """Our claim expired and another worker took the delivery over (409)."""

    reason = "lease lost"
