"""The dashboard's pictures: inline SVG drawn on the server from the delivery log.

Both charts read a receiver's bounded delivery log
(``store.deliveries(ns, limit=store.log_size)``), one line per attempt.
The log keeps the newest ``log_size`` attempts, so on a busy receiver it
may reach back less than a day; :class:`Window` says how far it does, and
the page says so. The SVG uses classes only (the stylesheet colours
them), no script and no inline style, so it renders under the
dashboard's Content-Security-Policy, offline and without JavaScript;
every bar carries a ``<title>`` the browser shows as a tooltip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from markupsafe import Markup, escape

from ..core.store import LogEntry

HOUR = 3600.0
DAY = 24 * HOUR

#: The chart's outcomes, bottom to top.
OUTCOMES = ("received", "duplicate", "failed", "rejected")

#: Log statuses (the response words) to the chart's outcomes. A 409 to a
#: sender's retry while the first attempt runs counts as a duplicate; a
#: successful replay as received; a 503 because the store was down
#: (``unavailable``) as failed; an unparsable body (``invalid``) as rejected.
OUTCOME_OF = {
    "received": "received",
    "ignored": "received",
    "replayed": "received",
    "duplicate": "duplicate",
    "in-flight": "duplicate",
    "error": "failed",
    "retry": "failed",
    "unavailable": "failed",
    "rejected": "rejected",
    "invalid": "rejected",
}


def clock_time(when: float, fmt: str = "%H:%M") -> str:
    return time.strftime(fmt, time.gmtime(when))


class Window(NamedTuple):
    """What one receiver's log says about the last day."""

    receiver: str
    #: The log's lines received in the last day, newest first.
    entries: tuple[LogEntry, ...]
    #: Lines the log holds (of any age) and can hold.
    held: int
    log_size: int
    oldest: float | None
    now: float

    @property
    def partial(self) -> bool:
        """True when the log is full and its oldest line is less than a day old."""
        return self.held >= self.log_size and self.oldest is not None and self.oldest > self.now - DAY

    @property
    def since(self) -> float:
        """From when the picture is complete."""
        if self.partial and self.oldest is not None:
            return self.oldest
        return self.now - DAY

    def describe(self) -> str:
        """``in the last 24 hours``, or how much of it the log covers."""
        if self.partial:
            return f"in the last {self.held} attempts (since {clock_time(self.since)} UTC)"
        return "in the last 24 hours"


def window(receiver: str, log: Sequence[LogEntry], log_size: int, now: float) -> Window:
    recent = tuple(e for e in log if now - DAY < e.received_at <= now)
    oldest = min((e.received_at for e in log), default=None)
    return Window(receiver, recent, len(log), log_size, oldest, now)


class Bucket(NamedTuple):
    start: float
    #: Attempts per outcome, in :data:`OUTCOMES` order.
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


def hourly(windows: Iterable[Window], now: float, hours: int = 24) -> list[Bucket]:
    """Attempts per clock hour (UTC), the current hour last, by outcome."""
    first = (now // HOUR) * HOUR - (hours - 1) * HOUR
    counts = [[0] * len(OUTCOMES) for _ in range(hours)]
    for w in windows:
        for entry in w.entries:
            outcome = OUTCOME_OF.get(entry.status)
            slot = int((entry.received_at - first) // HOUR)
            if outcome is not None and 0 <= slot < hours:
                counts[slot][OUTCOMES.index(outcome)] += 1
    return [Bucket(first + i * HOUR, tuple(c)) for i, c in enumerate(counts)]


def totals(buckets: Iterable[Bucket]) -> dict[str, int]:
    sums = [0] * len(OUTCOMES)
    for bucket in buckets:
        sums = [a + b for a, b in zip(sums, bucket.counts, strict=True)]
    return dict(zip(OUTCOMES, sums, strict=True))


def _nice_ceiling(value: int) -> int:
    """1, 2, 5, 10, 20, 50, ... at or above ``value``."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def hourly_svg(buckets: Sequence[Bucket], *, label: str) -> Markup:
    """A stacked bar per hour; ``label`` names the chart for screen readers."""
    width, height, left, right, top, bottom = 720, 220, 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max((b.total for b in buckets), default=0) or 1)
    slot = plot_w / max(len(buckets), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    for value in (0, peak // 2, peak) if peak > 1 else (0, peak):
        y = top + plot_h - plot_h * value / peak
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for i, bucket in enumerate(buckets):
        x = left + i * slot + 1
        span = f"{clock_time(bucket.start)}-{clock_time(bucket.start + HOUR)} UTC"
        said = ", ".join(f"{n} {o}" for o, n in zip(OUTCOMES, bucket.counts, strict=True) if n)
        parts.append(f"<g><title>{escape(span)}: {escape(said or 'nothing')}</title>")
        base = float(top + plot_h)
        for outcome, n in zip(OUTCOMES, bucket.counts, strict=True):
            if not n:
                continue
            h = plot_h * n / peak
            base -= h
            box = f'x="{x:.1f}" y="{base:.1f}" width="{slot - 2:.1f}" height="{h:.1f}"'
            parts.append(f'<rect class="o-{outcome}" {box}/>')
        hit = f'x="{x:.1f}" y="{top}" width="{slot - 2:.1f}" height="{plot_h}"'
        parts.append(f'<rect class="hit" {hit}/></g>')
        if i % 3 == 0:
            parts.append(
                f'<text class="axis" x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{clock_time(bucket.start)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


class SecretShare(NamedTuple):
    """Verified attempts per secret index (0 is the newest secret) in a window."""

    receiver: str
    #: How many secrets the receiver has now.
    keys: int
    counts: tuple[int, ...]
    #: The newest attempt per index, or None.
    last_used: tuple[float | None, ...]
    window: Window

    @property
    def total(self) -> int:
        return sum(self.counts)

    def verdict(self) -> str:
        """The answer to "can the old secret go?", in one sentence."""
        where = self.window.describe()
        if self.keys <= 1 and len(self.counts) <= 1:
            return "One secret: no rotation under way."
        if not self.total:
            return f"No verified attempt {where}: nothing to tell yet."
        old = sum(self.counts[1:])
        if not old:
            return f"Every verified attempt {where} used secret 0, the newest; none used an older one."
        newest = max((t for t in self.last_used[1:] if t is not None), default=None)
        when = f", the latest at {clock_time(newest, '%Y-%m-%d %H:%M')} UTC" if newest else ""
        return (
            f"{old} of {self.total} verified attempts ({100 * old / self.total:.1f}%) {where}"
            f" used an older secret{when}."
        )


def secret_share(w: Window, keys: int) -> SecretShare:
    """Counts per index of every sender's attempt that passed verification (replays excluded)."""
    size = max([keys, *(e.secret_index + 1 for e in w.entries if e.secret_index is not None)])
    counts = [0] * size
    last: list[float | None] = [None] * size
    for e in w.entries:
        if e.secret_index is None or e.status == "replayed" or e.secret_index < 0:
            continue
        counts[e.secret_index] += 1
        seen = last[e.secret_index]
        last[e.secret_index] = e.received_at if seen is None else max(seen, e.received_at)
    return SecretShare(w.receiver, keys, tuple(counts), tuple(last), w)


def share_svg(share: SecretShare) -> Markup:
    """One bar split by secret index."""
    width, height = 480, 22
    label = f"{share.receiver}: verified attempts per secret"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="share" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    if not share.total:
        parts.append(f'<rect class="empty" x="0" y="0" width="{width}" height="{height}"/>')
    x = 0.0
    for index, n in enumerate(share.counts):
        if not n:
            continue
        w = width * n / share.total
        parts.append(
            f"<g><title>secret {index}: {n} ({100 * n / share.total:.1f}%)</title>"
            f'<rect class="s{min(index, 3)}" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}"/></g>'
        )
        x += w
    parts.append("</svg>")
    return Markup("".join(parts))
