"""Reading what the Redis store's scripts wrote (:mod:`._redis_scripts`): records, kept
deliveries and the scripts' answers, as the core's types."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..core.inbox import Stored, decode_headers
from ..core.store import UNREADABLE, Claim, LogEntry, decode_reply, unreadable


def text(value: Any) -> str:
    """Replies come back as bytes, or as str from a ``decode_responses`` client."""
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def stored(id: str, record: Mapping[Any, Any], body: bytes | None, attempts: list[bytes]) -> Stored | None:
    """A delivery from its record's fields, body and attempt lines; None unless kept.

    A damaged field (not UTF-8, not a number) is :func:`unreadable`, not a 500.
    """
    try:
        fields = {text(k): v for k, v in record.items()}
        if body is None or "received_at" not in fields:
            return None
        secret = text(fields.get("secret_index"))
        inflight = text(fields.get("state")) == "inflight"
        return Stored(
            id,
            text(fields.get("type")),
            body,
            decode_headers(fields.get("headers")),
            float(fields["received_at"]),
            int(secret) if secret else None,
            text(fields.get("status")),
            float(fields["lease_until"]) if inflight else 0.0,
            {name[2:]: decode_reply(raw) for name, raw in fields.items() if name.startswith("h:")},
            tuple(LogEntry.from_json(line) for line in attempts),
            float(fields["retained_until"]) if fields.get("retained_until") else math.inf,
        )
    except UNREADABLE as exc:
        raise unreadable("kept delivery", exc) from exc


def answer(out: list[Any], token: str, now: float) -> Claim:
    """A claim or reopen script's answer: the state, then its data.

    A damaged record (a reply or a mark that is not UTF-8) is :class:`StoreUnavailable`
    with an error log, as one that is not JSON is, not a ``UnicodeDecodeError`` (a 500).
    """
    try:
        return _answer(out, token, now)
    except UnicodeDecodeError as exc:
        raise unreadable("record", exc) from exc


def _answer(out: list[Any], token: str, now: float) -> Claim:
    state = text(out[0])
    if state == "done":
        return Claim("done", reply=decode_reply(text(out[1])), outcome=text(out[2]))
    if state == "reopened":  # a replay of a completed delivery: its reply and outcome, then marks
        claim = answer(["new", *out[3:]], token, now)
        return claim._replace(reply=decode_reply(text(out[1])), outcome=text(out[2]))
    if state == "inflight":
        return Claim("inflight", retry_after=float(text(out[1])) - now)
    handlers = {text(out[i]): decode_reply(text(out[i + 1])) for i in range(1, len(out) - 1, 2)}
    return Claim("new", token=token, handlers=handlers)
