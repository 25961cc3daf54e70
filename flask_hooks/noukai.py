"""Noukai helpers that do I/O (kept out of the sans-I/O core).

Noukai truncates large job outputs in the callback: when
``payload.truncated`` is true the full result must be fetched from the
jobs API (``GET <base_url>/jobs/{executionId}``, where ``base_url`` is the
``.../seq/<slug>`` prefix your jobs were submitted to)::

    from flask_hooks.noukai import fetch_full_output

    @hooks.on("*")
    def on_job(event):
        output = fetch_full_output(event, base_url=BASE, api_key=KEY)

Call it from the handler (or a deferred task): a failure raises, the
handler fails, the claim is released, and Noukai's retry tries again.
Fetching needs ``requests`` (imported only then).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .core.errors import PayloadError
from .core.event import Event

if TYPE_CHECKING:
    import requests

#: Where the flags may sit: the body itself or its ``payload``/``data`` object.
_PLACES = ((), ("payload",), ("data",))


def _places(payload: Any) -> list[Mapping[str, Any]]:
    out = []
    for path in _PLACES:
        node = payload
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            out.append(node)
    return out


def _output(document: Any) -> Any:
    """The ``output`` of a callback body or a job (at the top, or in ``payload``/``data``)."""
    for place in _places(document):
        if "output" in place:
            return place["output"]
    return document


def is_truncated(event: Event | Any) -> bool:
    """Whether the callback says its output was truncated (``truncated === true``)."""
    payload = event.payload if isinstance(event, Event) else event
    return any(place.get("truncated") is True for place in _places(payload))


def execution_id(event: Event | Any) -> str:
    """The job's ``executionId``, or :class:`~flask_hooks.PayloadError` when there is none."""
    payload = event.payload if isinstance(event, Event) else event
    for place in _places(payload):
        value = place.get("executionId")
        if isinstance(value, str) and value:
            return value
    raise PayloadError("missing executionId")


def fetch_full_output(
    event: Event | Any,
    *,
    base_url: str,
    api_key: str,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    auth_header: str = "Authorization",
    auth_scheme: str = "Bearer",
) -> Any:
    """The job's full ``output``: fetched from the jobs API when the callback
    says it was truncated, else the callback's own ``output``.

    A body or job without an ``output`` field is returned whole.

    Raises ``requests.HTTPError`` (non-2xx) or another
    ``requests.RequestException``; let it fail the handler so the
    delivery is retried rather than acknowledged with partial output.
    """
    payload = event.payload if isinstance(event, Event) else event
    if not is_truncated(payload):
        return _output(payload)
    import requests  # only needed once something is truncated

    job = urllib.parse.quote(execution_id(payload), safe="")
    url = f"{base_url.rstrip('/')}/jobs/{job}"
    credential = f"{auth_scheme} {api_key}" if auth_scheme else api_key
    http = session or requests.Session()
    try:
        response = http.get(
            url, headers={auth_header: credential, "Accept": "application/json"}, timeout=timeout
        )
        response.raise_for_status()
        return _output(response.json())
    finally:
        if session is None:
            http.close()
