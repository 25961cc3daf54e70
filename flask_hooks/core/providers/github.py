"""``github``: ``X-Hub-Signature-256: sha256=<hex>`` of the raw body.

GitHub sends no timestamp and never retries on its own; a manual
redelivery keeps ``X-GitHub-Delivery``, so that is the dedupe id. The
event type is ``X-GitHub-Event`` plus ``.action`` when the payload has
one (``issues.opened``, ``ping``), so ``@hooks.on("issues")`` gets every
issues action. A webhook's content type is ``application/json`` or
``application/x-www-form-urlencoded`` (the REST API's default,
``content_type: "form"``), whose body is one ``payload`` field holding the
same JSON; the signature covers the body as sent either way.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from ..errors import PayloadError, VerificationError
from ..event import HeaderMap
from ._json import dump, load_json_text, load_object
from ._parsing import bounded_header
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    field,
    match_body_mac,
    outgoing_payload,
    require_str,
)

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="
_FORM = b"payload="


def _payload(body: bytes) -> dict[str, Any]:
    """The event's JSON object: the body, or its one ``payload`` field when form-encoded."""
    if not body.startswith(_FORM):
        return load_object(body)
    try:
        fields = urllib.parse.parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=1,
            errors="strict",
        )
    except ValueError:  # not ASCII, a second field, or percent-escapes that are not UTF-8
        raise PayloadError("body is neither JSON nor a form with one payload field") from None
    payload = load_json_text(fields[0][1])
    if not isinstance(payload, dict):
        raise PayloadError("payload is not a JSON object")
    return payload


class GitHub(HmacProvider):
    """GitHub repository, organisation and app webhooks (JSON or form content type)."""

    name = "github"
    signs_timestamp = False

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        value = bounded_header(headers, HEADER)
        if not value.startswith(PREFIX):
            raise VerificationError("signature must start with sha256=")
        # Lowercase hex, as GitHub sends and its own sample code compares.
        return match_body_mac(value[len(PREFIX) :], body, keys, bytes.hex)

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        payload = _payload(body)
        event = require_str(headers.get("X-GitHub-Event"), "X-GitHub-Event")
        action = field(payload, "action")
        kind = f"{event}.{action}" if isinstance(action, str) and action else event
        return Parsed(
            id=require_str(headers.get("X-GitHub-Delivery"), "X-GitHub-Delivery"),
            type=require_str(kind, "type"),  # the action comes from the body: the whole is held to MAX_ID
            payload=payload,
        )

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        """``"issues.opened"`` becomes event ``issues`` with ``action: "opened"``."""
        event, _, action = outgoing.type.partition(".")
        body = dump(outgoing_payload(outgoing, action=action) if action else outgoing_payload(outgoing))
        mac = key.mac(body).hex()
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/flask-hooks",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": outgoing.id,
                HEADER: PREFIX + mac,
            },
        )
