"""What the inbox keeps of each delivery, and how it is read back, without I/O.

Every verified delivery is kept with its exact body, its headers with
credentials redacted, its handlers' marks and every attempt, for the
receiver's ``retention``. A claim carries it (:class:`Kept`) so storing it
costs no transaction of its own; stores give it back as :class:`Stored`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .store import FORMAT_VERSION, LogEntry, Reply

#: Headers that carry credentials; never stored, whatever the provider.
REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
REDACTED = "[redacted]"

#: Attempts kept per delivery (the newest); a sender retrying for days stays bounded.
MAX_ATTEMPTS = 100

#: How much of a refused request's body the bounded log keeps, escaped.
EXCERPT = 200

STATUSES = ("received", "ignored", "failed", "in-flight")


class Kept(NamedTuple):
    """A verified delivery as the claim stores it."""

    type: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    received_at: float
    secret_index: int | None
    #: Seconds the delivery is kept (at least the dedupe TTL).
    retention: float


class Stored(NamedTuple):
    """A delivery as a store gives it back."""

    id: str
    type: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    received_at: float
    secret_index: int | None
    #: ``in-flight``, ``received``, ``ignored`` or ``failed``, as last written.
    status: str
    lease_until: float
    handlers: Mapping[str, Reply | None]
    attempts: tuple[LogEntry, ...]

    def status_at(self, now: float) -> str:
        """The status; a claim whose lease ran out (its worker died) is a failure."""
        if self.status == "in-flight" and self.lease_until <= now:
            return "failed"
        return self.status


def redact(headers: Iterable[tuple[str, str]], extra: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """The headers to store: credentials (and ``extra`` names) replaced."""
    hidden = REDACTED_HEADERS | {name.lower() for name in extra}
    return tuple((k, REDACTED if k.lower() in hidden else v) for k, v in headers)


def excerpt(body: bytes, masked: Iterable[str] = ()) -> str:
    """A short, escaped beginning of a refused body: metadata, never replayable.

    The provider's credential fields (``masked``) are replaced before the
    text is cut, so a refused request never leaves its secret in the log.
    """
    text = body[: EXCERPT * 4].decode("utf-8", "backslashreplace")
    for field in masked:
        text = re.sub(rf'("{re.escape(field)}"\s*:\s*)"(?:[^"\\]|\\.)*"?', rf'\1"{REDACTED}"', text)
    cut = text[:EXCERPT]
    return cut.encode("unicode_escape").decode("ascii") + ("..." if len(text) > EXCERPT else "")


def encode_headers(headers: Iterable[tuple[str, str]]) -> str:
    return json.dumps({"v": FORMAT_VERSION, "headers": [list(pair) for pair in headers]})


def decode_headers(raw: str | bytes | None) -> tuple[tuple[str, str], ...]:
    if not raw:
        return ()
    return tuple((str(k), str(v)) for k, v in json.loads(raw).get("headers", ()))


def encode_attempts(attempts: Iterable[LogEntry]) -> str:
    return attempts_record(a.to_json() for a in attempts)


def attempts_record(lines: Iterable[str]) -> str:
    """:func:`encode_attempts` from the attempts' log lines (``LogEntry.to_json``), as they are."""
    return f'{{"v": {FORMAT_VERSION}, "attempts": [{", ".join(lines)}]}}'


def decode_attempts(raw: str | bytes | None) -> tuple[LogEntry, ...]:
    if not raw:
        return ()
    return tuple(LogEntry.from_json(json.dumps(a)) for a in json.loads(raw).get("attempts", ()))


def type_matches(pattern: str | None, type: str) -> bool:
    """The routing patterns (``a.b``, ``a.*``, ``*``) as a filter."""
    if pattern is None or pattern == "*":
        return True
    if pattern.endswith(".*"):
        return type.startswith(pattern[:-1])
    return type == pattern or type.startswith(pattern + ".")


def type_like(pattern: str | None) -> tuple[str | None, str | None]:
    """``(exact, prefix)`` for SQL: the type equals ``exact`` or starts with ``prefix``."""
    if pattern is None or pattern == "*":
        return None, None
    if pattern.endswith(".*"):
        return None, pattern[:-1]
    return pattern, pattern + "."


def like_prefix(prefix: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` operand matching strings that start with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def bounded(attempts: tuple[LogEntry, ...], entry: LogEntry) -> tuple[LogEntry, ...]:
    return (*attempts, entry)[-MAX_ATTEMPTS:]


def payload_of(body: bytes) -> Any:
    """A kept body parsed as JSON, or None for a body that is not (a form post)."""
    try:
        return json.loads(body)
    except ValueError:
        return None
