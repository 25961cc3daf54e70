"""The request a replay runs its handlers in: the delivery's own, as it was received."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.util import is_hop_by_hop

from flask import Flask

from .core.inbox import Stored
from .view import lift_app_limit

if TYPE_CHECKING:
    from .extension import Receiver

#: Kept headers a replay's request does not repeat: werkzeug sets its own length, and the
#: host is its base URL.
_NOT_RESENT = frozenset({"content-length", "host"})


@contextlib.contextmanager
def as_received(app: Flask, receiver: Receiver, stored: Stored) -> Iterator[None]:
    """A request of the delivery, for its replay: the kept body and headers (credentials
    redacted) POSTed to the receiver's URL on the host it came to, so a handler that
    reads ``request`` or calls ``url_for`` works as it did live. In an app context of
    its own: the replay never shares ``g`` (or a session) with the dashboard page or the
    other replays of a bulk run. The app's ``before_request`` functions do not run."""
    headers = [(k, v) for k, v in stored.headers if k.lower() not in _NOT_RESENT and not is_hop_by_hop(k)]
    kept = {k.lower(): v for k, v in stored.headers}
    base_url = None  # Flask's own: SERVER_NAME, APPLICATION_ROOT, PREFERRED_URL_SCHEME
    if "host" in kept:
        # The scheme a TLS proxy said (ProxyFix reads the same header live), and the root
        # Flask would add to any URL it builds itself.
        proto = kept.get("x-forwarded-proto", "").lower()
        scheme = proto if proto in ("http", "https") else app.config["PREFERRED_URL_SCHEME"]
        root = (app.config["APPLICATION_ROOT"] or "/").lstrip("/")
        base_url = f"{scheme}://{kept['host']}/{root}"
    url, body = receiver.settings.url, stored.body
    context = app.test_request_context(url, base_url, method="POST", data=body, headers=headers)
    lift_app_limit(app, context.request, receiver.settings.max_body)  # as live
    with app.app_context(), context:
        yield
