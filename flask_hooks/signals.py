"""Blinker signals, sent with the application as sender.

Every signal gets ``receiver`` (the receiver's name) and, once the
delivery is verified, ``event``. Connect with ``**extra`` so new keyword
arguments never break a subscriber.
"""

from __future__ import annotations

import inspect
import logging
import sys
import traceback
from collections.abc import Callable, Collection
from typing import Any

from blinker import NamedSignal, Namespace

from .core.scrub import scrub

_signals = Namespace()

#: A request reached a receiver (nothing is verified yet).
delivery_received = _signals.signal("delivery-received")
#: The signature checked out and the body parsed; ``event``.
delivery_verified = _signals.signal("delivery-verified")
#: Verification or parsing failed; ``reason`` says why. No handler runs.
delivery_rejected = _signals.signal("delivery-rejected")
#: The id was seen before; ``in_flight`` tells whether it is still running.
delivery_duplicate = _signals.signal("delivery-duplicate")
#: Every matching handler succeeded (or was enqueued) and the outcome is
#: stored; ``handlers`` ran in this request, ``deferred`` went to a queue.
event_handled = _signals.signal("event-handled")
#: No handler matched; the id is recorded all the same.
event_ignored = _signals.signal("event-ignored")
#: A handler raised; ``handler`` and ``error``. The claim is released. ``handlers``
#: succeeded in this request before it (they are recorded and will not run again).
handler_failed = _signals.signal("handler-failed")
#: An operator replayed a kept delivery; ``outcome`` is its result's word.
delivery_replayed = _signals.signal("delivery-replayed")

#: Every signal by its attribute name, in pipeline order: the names the core's
#: ``notify`` uses and the pytest plugin's recorder reports.
by_name = {
    "delivery_received": delivery_received,
    "delivery_verified": delivery_verified,
    "delivery_rejected": delivery_rejected,
    "delivery_duplicate": delivery_duplicate,
    "event_handled": event_handled,
    "event_ignored": event_ignored,
    "handler_failed": handler_failed,
    "delivery_replayed": delivery_replayed,
}


def send_safely(
    signal: NamedSignal, sender: Any, secrets: Callable[[], Collection[str]] = tuple, /, **kwargs: Any
) -> None:
    """Send ``signal``; a subscriber that raises is logged and changes nothing.

    Subscribers observe deliveries: one that fails must not keep a claim
    held (every retry a 409) or turn a duplicate into a 500. An ``async def``
    subscriber runs through the app's ``ensure_sync``, as for Flask's own
    signals (called directly, it would return a coroutine that never runs).
    A subscriber's traceback may quote the delivery's credentials, as a
    handler's may: ``secrets()`` (asked only then) are blanked in it.
    """
    if signal.is_muted:
        return
    handling = sys.exc_info()[1]  # a failed handler's error, for handler_failed
    for receiver in signal.receivers_for(sender):
        try:
            if inspect.iscoroutinefunction(receiver):
                receiver = sender.ensure_sync(receiver)
            receiver(sender, **kwargs)
        except Exception as exc:
            log, message = logging.getLogger("flask_hooks"), "a subscriber of %s raised; the delivery goes on"
            # Told of a handler's error (handler_failed): no part of that one's traceback.
            text = _own(exc, handling) if handling is not None else "".join(traceback.format_exception(exc))
            shown = scrub(text, secrets())
            if handling is None and shown == text:
                log.error(message, signal.name, exc_info=exc)
            else:
                log.error(message + "\n%s", signal.name, shown.rstrip())


def _own(error: BaseException, handling: BaseException | None) -> str:
    """The traceback of a subscriber's ``error`` and of its own causes, without ``handling``.

    A subscriber of ``handler_failed`` runs while the handler's error is being
    handled, so that error is the context of its own, and its text may quote
    a credential: the pipeline logged it already, with the credentials blanked.
    """
    shown = traceback.TracebackException.from_exception(error)
    node, real = shown, error
    for _ in range(100):  # along the chain as it is printed: a cause, else a shown context
        if real.__cause__ is handling:
            node.__cause__ = None
        if real.__context__ is handling:
            node.__context__ = None
        if node.__cause__ is not None and real.__cause__ is not None:
            node, real = node.__cause__, real.__cause__
        elif node.__context__ is not None and real.__context__ is not None and not real.__suppress_context__:
            node, real = node.__context__, real.__context__
        else:
            break
    return "".join(shown.format()).rstrip()
