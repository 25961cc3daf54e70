"""What the inbox keeps of each delivery, and how it is read back, without I/O.

Every verified delivery is kept with its exact body, its headers with
credentials redacted, its handlers' marks and every attempt, for the
receiver's ``retention``. A claim carries it (:class:`Kept`) so storing it
costs no transaction of its own; stores give it back as :class:`Stored`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote_plus, unquote_plus

from .event import HeaderMap, Headers
from .scrub import REDACTED, scrub
from .store import FORMAT_VERSION, UNREADABLE, LogEntry, Reply, unreadable

#: Headers that carry credentials; never stored, whatever the provider.
REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: Any other header whose name holds one of these (case-insensitive) is taken to carry a
#: credential too (``X-Api-Key``, ``X-Shared-Key``, ``X-Auth-Token``, ``X-Gitlab-Token``,
#: ``X-Webhook-Secret``), unless it holds one of :data:`KEPT_WORDS`.
CREDENTIAL_WORDS = (
    "auth",
    "token",
    "secret",
    "passw",
    "key",
    "session",
    "credential",
    "cookie",
    "jwt",  # an identity proxy's assertion (Cf-Access-Jwt-Assertion, X-Goog-Iap-Jwt-Assertion)
    "assertion",
)
_CREDENTIAL = re.compile("|".join(CREDENTIAL_WORDS))

#: Names kept whatever else they hold: a signature is made over one body, so it is no
#: credential, and an operator needs it to see why a delivery was accepted or refused;
#: an idempotency key and Bitbucket's ``X-Event-Key`` (the event type) admit nothing.
KEPT_WORDS = ("signature", "idempotency", "event-key")

#: Attempts kept per delivery (the newest); a sender retrying for days stays bounded.
MAX_ATTEMPTS = 100

#: How much of a refused request's body the bounded log keeps, escaped.
EXCERPT = 200
#: How much of a refused body is read (bytes) to make its excerpt, unless it is parsed.
READ = EXCERPT * 4
#: The longest text (a body, a form value) parsed as JSON to mask it; a longer
#: one is masked by the loose pass alone, so an unsigned request costs no CPU.
PARSED = 16 * 1024

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

    def __repr__(self) -> str:  # the body may hold credentials: never in a repr
        return f"Kept(type={self.type!r}, body=<{len(self.body)} bytes>, received_at={self.received_at!r})"


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
    #: Until when it is kept; past it the delivery is gone, swept or not yet.
    retained_until: float = math.inf

    def __repr__(self) -> str:  # the body may hold credentials: never in a repr
        shown = f"id={self.id!r}, type={self.type!r}, status={self.status!r}"
        return f"Stored({shown}, body=<{len(self.body)} bytes>)"

    def status_at(self, now: float) -> str:
        """The status; a claim whose lease ran out (its worker died) is a failure."""
        if self.status == "in-flight" and self.lease_until <= now:
            return "failed"
        return self.status

    def kept_at(self, now: float) -> bool:
        """Whether it is still kept: the purge removes it once its retention is over,
        unless a live claim holds it, and it is gone from the inbox from then on."""
        return self.retained_until > now or (self.status == "in-flight" and self.lease_until > now)


def redacted_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """The (lowercase) names of the headers that carry credentials, and ``extra`` ones."""
    return REDACTED_HEADERS | {name.lower() for name in extra}


def is_credential(name: str, names: Collection[str]) -> bool:
    """Whether the header ``name`` carries a credential: one of ``names``
    (:func:`redacted_names`), or a name with one of :data:`CREDENTIAL_WORDS`."""
    lower = name.lower()
    if lower in names:
        return True
    return _CREDENTIAL.search(lower) is not None and not any(word in lower for word in KEPT_WORDS)


def redact(headers: Iterable[tuple[str, str]], extra: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """The headers to store: credentials (and ``extra`` names) replaced."""
    hidden = redacted_names(extra)
    return tuple((k, REDACTED if is_credential(k, hidden) else v) for k, v in headers)


def excerpt(body: bytes, masked: Iterable[str] = (), secrets: Iterable[str] = ()) -> str:
    """A short, escaped beginning of a refused body: metadata, never replayable.

    The provider's credential fields (``masked``) are replaced before the
    text is cut (:func:`mask_text`), and so are the receiver's own
    ``secrets`` wherever they appear (a forgery may carry the real one under
    another name), so a refused request never leaves a secret in the log.
    The work is bounded whatever the body: JSON is parsed whole only up to
    :data:`PARSED` bytes; anything else (a form, a longer or broken body) is
    read and masked only as far as :data:`READ` bytes, by passes that hide a
    value cut at the end, so a refused gigabyte costs no more than a line.
    """
    names = frozenset(masked)
    whole = bool(names) and len(body) <= PARSED
    text = (body if whole else body[:READ]).decode("utf-8", "backslashreplace")
    shown = _mask_json(text, names) if whole else None
    cut = shown is None and (len(text) > READ or len(body) > READ)
    if shown is None:
        shown = _mask_rest(text[:READ], names) if names else text[:READ]
    shown = scrub(shown, secrets)
    return _escaped(shown[:EXCERPT]) + ("..." if cut or len(shown) > EXCERPT else "")


def mask_excerpt(shown: str, masked: Iterable[str]) -> str:
    """An :func:`excerpt` masked again when shown, for lines logged before a
    field was declared (or by an older version); one that does not unescape
    is not shown at all."""
    names = frozenset(masked)
    if not shown or not names:
        return shown
    try:
        text = shown.encode("ascii", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return REDACTED
    return _escaped(mask_text(text, names))


def mask_text(text: str, masked: Iterable[str]) -> str:
    """``text`` with the value of each credential field (``masked``) replaced.

    JSON (up to :data:`PARSED` characters) is parsed, so a key spelled with
    escapes (``"\\u0073ecret"``) or nested at any depth is found; it is
    written back on one line only when something was masked. A form
    (``token=...&payload=<JSON>``) is masked pair by pair. Anything else (a
    cut, broken or longer body) goes through :func:`_mask_loose`, which
    hides too much rather than too little, in one linear scan.
    """
    names = frozenset(masked)
    if not names:
        return text
    found = _mask_json(text, names)
    return _mask_rest(text, names) if found is None else found


def _mask_rest(text: str, names: frozenset[str]) -> str:
    """Text that is not JSON: a form pair by pair, then the loose pass."""
    if text.lstrip()[:1] not in ("{", "["):  # broken JSON is no form: keep it readable
        text = _mask_form(text, names)
    return _mask_loose(text, names)


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def _mask_json(text: str, names: frozenset[str]) -> str | None:
    """``text`` masked if it is JSON (as it was when nothing is), else None.

    The loose pass runs on the result too: JSON held in a string
    (``"{\\"secret\\": ...}"``) is found there, in one pass. Text longer
    than :data:`PARSED` is not parsed (None): the caller's loose pass masks it.
    """
    if len(text) > PARSED:
        return None
    try:
        data = json.loads(text)
        masked = mask_fields(data, names)
        return _mask_loose(text if masked == data else json.dumps(masked, ensure_ascii=False), names)
    except (ValueError, RecursionError):  # too deep for us: the loose pass still runs
        return None


def mask_fields(value: Any, names: Collection[str]) -> Any:
    """A copy of ``value`` with the value of every key in ``names``, at any depth, replaced.

    Walked without recursion: an accepted body nests up to
    :data:`~flask_hooks.providers.MAX_DEPTH` levels, deeper than Python's
    stack allows a recursive copy (two frames a level).
    """
    if not isinstance(value, (dict, list)):
        return value
    top: Any = {} if isinstance(value, dict) else [None] * len(value)
    todo = [(value, top)]
    while todo:
        source, copy = todo.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            if isinstance(source, dict) and key in names:
                copy[key] = REDACTED
            elif isinstance(item, (dict, list)):
                copy[key] = {} if isinstance(item, dict) else [None] * len(item)
                todo.append((item, copy[key]))
            else:
                copy[key] = item
    return top


def _mask_form(text: str, names: frozenset[str]) -> str:
    """A form's credential pairs masked (the key may be %-encoded), and every
    encoded value masked inside too (Slack's ``payload=<JSON>``)."""
    pairs = text.split("&")
    for i, pair in enumerate(pairs):
        key, eq, value = pair.partition("=")
        if not eq:
            continue
        if unquote_plus(key) in names:
            pairs[i] = f"{key}={REDACTED}"
            continue
        decoded = unquote_plus(value)
        if decoded == value:  # nothing encoded: the loose pass sees it as it is
            continue
        inner = _mask_json(decoded, names) if decoded.lstrip()[:1] in ("{", "[") else None
        inner = _mask_loose(decoded, names) if inner is None else inner
        if inner != decoded:
            pairs[i] = f"{key}={quote_plus(inner)}"
    return "&".join(pairs)


def _mask_loose(text: str, names: frozenset[str]) -> str:
    """Each ``"name": value`` in text that is not (or no longer) JSON masked.

    The key may be spelled with ``\\uXXXX`` escapes, in any case, or
    escaped itself (JSON inside a JSON string); a string value may run to
    the end (a cut body), and an object or list value hides the rest.
    """
    return _loose_pattern(names).sub(rf'\1"{REDACTED}"', text)


@functools.lru_cache(maxsize=32)
def _loose_pattern(names: frozenset[str]) -> re.Pattern[str]:
    # Each character of a key as itself or as \uXXXX, the backslash itself
    # escaped in JSON held in a string (\\uXXXX); the match starts at the
    # quote, so a run of backslashes before it is never scanned twice.
    spelled = ("".join(f"(?:{re.escape(ch)}|\\\\+u{ord(ch):04x})" for ch in name) for name in sorted(names))
    keys = "|".join(spelled)
    value = r'\\*"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[{].*|[^\s,\]}]+'
    return re.compile(rf'("(?:{keys})\\*"\s*:\s*)(?:{value})', re.IGNORECASE | re.DOTALL)


def encode_headers(headers: Iterable[tuple[str, str]]) -> str:
    return json.dumps({"v": FORMAT_VERSION, "headers": [list(pair) for pair in headers]})


def decode_headers(raw: str | bytes | None) -> tuple[tuple[str, str], ...]:
    """A kept delivery's headers; damaged (or of a newer kind): :func:`unreadable`, not a 500."""
    if not raw:
        return ()
    try:
        return tuple((str(k), str(v)) for k, v in json.loads(raw).get("headers", ()))
    except UNREADABLE as exc:
        raise unreadable("headers", exc) from exc


def encode_attempts(attempts: Iterable[LogEntry]) -> str:
    return attempts_record(a.to_json() for a in attempts)


def attempts_record(lines: Iterable[str]) -> str:
    """:func:`encode_attempts` from the attempts' log lines (``LogEntry.to_json``), as they are."""
    return f'{{"v": {FORMAT_VERSION}, "attempts": [{", ".join(lines)}]}}'


def decode_attempts(raw: str | bytes | None) -> tuple[LogEntry, ...]:
    """A kept delivery's attempts; damaged (or of a newer kind): :func:`unreadable`."""
    if not raw:
        return ()
    try:
        attempts = json.loads(raw).get("attempts", ())
        return tuple(LogEntry.from_data(a) for a in attempts)
    except UNREADABLE as exc:
        raise unreadable("attempts", exc) from exc


def is_text(value: str) -> bool:
    """Whether ``value`` is text every store can write: no NUL (PostgreSQL's text holds
    none) and no lone surrogate (click passes bytes that are not UTF-8 as those; a JSON
    ``"\\ud800"`` parses to one)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


#: A provider's ``parse``: what it makes of a body (the ``payload`` of its result).
Parse = Callable[[HeaderMap, bytes], Any]


def payload_of(body: bytes, headers: Iterable[tuple[str, str]] = (), parse: Parse | None = None) -> Any:
    """A kept body parsed as JSON; a form post (Slack's fields, the JSON in Slack's or
    GitHub's ``payload`` field) as its provider's ``parse`` reads it, given the kept
    headers; None for a body neither reads."""
    try:
        return json.loads(body)
    except ValueError:
        return _parsed(body, headers, parse)


def _parsed(body: bytes, headers: Iterable[tuple[str, str]], parse: Parse | None) -> Any:
    """What ``parse`` makes of a kept body, as JSON would show it (a custom provider's
    ``Decimal`` as its text), or None: a view of a delivery never fails on its payload,
    whatever a custom provider's ``parse`` raises or returns."""
    if parse is None:
        return None
    try:
        return json.loads(json.dumps(parse(Headers(headers), body).payload, default=str))
    except Exception:  # PayloadError, or a custom parse's own error on a body kept long ago
        return None
