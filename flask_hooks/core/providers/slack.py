"""``slack``: ``X-Slack-Signature: v0=<hex>`` of ``v0:timestamp:body``.

``X-Slack-Request-Timestamp`` is checked both ways (Slack's own helper
rejects ``abs(now - ts) > 300``). Events API envelopes are deduplicated on
``event_id`` and typed by ``event.type``; the ``url_verification``
handshake is answered at once with ``{"challenge": ...}``. Slash commands
and interactivity (form bodies) are typed ``command.<name>`` and
``interactive.<type>`` and deduplicated on ``trigger_id``; an interaction
that has none (``block_suggestion``, ``view_closed``) on the SHA-256 of its
body, since several options requests from one modal share its view id.
``X-Slack-Retry-Num`` (1..3 on retries) becomes ``event.attempt`` (2..4).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Sequence
from typing import Any

from ..errors import PayloadError, VerificationError
from ..event import HeaderMap
from ._json import dump, load_json, load_json_text
from ._parsing import bounded_header
from .base import (
    HmacKey,
    HmacProvider,
    Outgoing,
    Parsed,
    SignedRequest,
    Tolerance,
    Verified,
    check_issued,
    check_timestamp,
    field,
    match_body_mac,
    outgoing_payload,
    require_str,
)

SIGNATURE = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"
VERSION = "v0"
_MARK = VERSION + "="


def _attempt(headers: HeaderMap) -> int:
    raw = (headers.get("X-Slack-Retry-Num") or "0").strip()
    return int(raw) + 1 if raw.isascii() and raw.isdigit() and len(raw) < 4 else 1


class Slack(HmacProvider):
    """Slack apps: Events API, slash commands and interactivity."""

    name = "slack"
    #: The legacy verification token rides in the body; a response_url lets whoever has
    #: it post to the channel (for 30 minutes): neither is shown.
    redacted_fields = ("token", "response_url")

    def keys(self, secrets: Sequence[str]) -> tuple[HmacKey, ...]:
        check_issued(self.name, secrets, "the app's signing secret")
        return super().keys(secrets)

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[HmacKey],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        raw_stamp = bounded_header(headers, TIMESTAMP)
        value = bounded_header(headers, SIGNATURE)
        if not value.startswith(_MARK):
            raise VerificationError("signature must start with v0=")
        timestamp = check_timestamp(raw_stamp, now=now, tolerance=tolerance)
        # Lowercase hex compared as text, as Slack sends it and slack_sdk compares it.
        return match_body_mac(
            value[len(_MARK) :],
            body,
            keys,
            bytes.hex,
            prefix=f"{VERSION}:{raw_stamp}:".encode("ascii"),
            timestamp=timestamp,
        )

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        attempt = _attempt(headers)
        if body.lstrip()[:1] != b"{":
            return self._parse_form(body, attempt)
        payload = load_json(body)
        kind = field(payload, "type")
        if kind == "url_verification":
            return Parsed(id="url_verification", type=kind, payload=payload, attempt=attempt)
        if kind == "app_rate_limited":
            minute = require_str(field(payload, "minute_rate_limited"), "minute_rate_limited")
            delivery = require_str(f"app_rate_limited:{minute}", "id")
            return Parsed(id=delivery, type=kind, payload=payload, attempt=attempt)
        return Parsed(
            id=require_str(field(payload, "event_id"), "event_id"),
            type=require_str(field(payload, "event", "type"), "event.type"),
            payload=payload,
            attempt=attempt,
        )

    @staticmethod
    def _parse_form(body: bytes, attempt: int) -> Parsed:
        try:
            # errors="strict": a percent-escape that is not UTF-8 would otherwise reach the
            # handler as U+FFFD, a value nobody signed.
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), max_num_fields=256, errors="strict"))
        except ValueError:  # UnicodeDecodeError included
            raise PayloadError("body is neither JSON nor a form") from None
        if "payload" in form:
            payload: Any = load_json_text(form["payload"])
            kind = require_str(field(payload, "type"), "type")
            delivery = field(payload, "trigger_id") or "sha256:" + hashlib.sha256(body).hexdigest()
            return Parsed(
                id=require_str(delivery, "trigger_id"),
                type=require_str(f"interactive.{kind}", "type"),
                payload=payload,
                attempt=attempt,
            )
        command = require_str(form.get("command"), "command").lstrip("/")
        return Parsed(
            id=require_str(form.get("trigger_id"), "trigger_id"),
            type=require_str(f"command.{require_str(command, 'command')}", "type"),
            payload=form,
            attempt=attempt,
        )

    def immediate(self, parsed: Parsed) -> Any:
        if parsed.type == "url_verification":
            return {"challenge": str(field(parsed.payload, "challenge") or "")}
        return None

    def sign(self, outgoing: Outgoing, key: HmacKey) -> SignedRequest:
        """An Events API ``event_callback`` (or the ``url_verification`` handshake)."""
        event = outgoing_payload(outgoing, type=outgoing.type)
        if not isinstance(event, dict):
            event = {"type": outgoing.type}
        payload: dict[str, Any]
        if outgoing.type == "url_verification":
            challenge = event.get("challenge", "challenge")
            payload = {"token": "verification-token", "challenge": challenge, "type": "url_verification"}
        else:
            payload = {
                "token": "verification-token",
                "team_id": "T00000000",
                "api_app_id": "A00000000",
                "event": event,
                "type": "event_callback",
                "event_id": outgoing.id,
                "event_time": outgoing.timestamp,
            }
        body = dump(payload)
        mac = key.mac(f"{VERSION}:{outgoing.timestamp}:".encode(), body).hex()
        return SignedRequest(
            body=body,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP: str(outgoing.timestamp),
                SIGNATURE: f"{VERSION}={mac}",
            },
        )
