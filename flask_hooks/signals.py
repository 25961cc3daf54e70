"""Blinker signals, sent with the application as sender.

Every signal gets ``receiver`` (the receiver's name) and, once the
delivery is verified, ``event``. Connect with ``**extra`` so new keyword
arguments never break a subscriber.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

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


def send_safely(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``; a subscriber that raises is logged and changes nothing.

    Subscribers observe deliveries: one that fails must not keep a claim
    held (every retry a 409) or turn a duplicate into a 500.
    """
    if signal.is_muted:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            logging.getLogger("flask_hooks").exception(
                "a subscriber of %s raised; the delivery goes on", signal.name
            )
