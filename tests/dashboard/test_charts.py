"""The pictures: per-hour outcomes and per-secret shares from the bounded log."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from flask_hooks.core.store import LogEntry
from flask_hooks.dashboard import charts
from flask_hooks.deliveries_cli import LOG_STATUSES
from flask_hooks.stores import MemoryStore
from tests.dashboard.shop import NOW, OLD, Shop, seed_day

HOUR = 3600.0
SVG = "{http://www.w3.org/2000/svg}"


def entry(status: str, at: float, secret_index: int | None = 0) -> LogEntry:
    return LogEntry("e", "t", status, 200, secret_index=secret_index, received_at=at)


def test_every_log_status_has_an_outcome() -> None:
    assert set(charts.OUTCOME_OF) == set(LOG_STATUSES)
    assert set(charts.OUTCOME_OF.values()) == set(charts.OUTCOMES)


def test_hourly_buckets_are_clock_hours_ending_now() -> None:
    now = 1_750_000_000.0 + 1800  # half past an hour
    log = [
        entry("received", now - 10),
        entry("ignored", now - 20),
        entry("duplicate", now - HOUR),
        entry("error", now - 3 * HOUR),
        entry("invalid", now - 23 * HOUR, None),
        entry("received", now - 25 * HOUR),  # older than a day: out
        entry("received", now + 5),  # a clock ahead: out
    ]
    w = charts.window("r", log, 1000, now)
    buckets = charts.hourly([w], now)
    assert len(buckets) == 24
    assert buckets[-1].start == (now // HOUR) * HOUR
    assert buckets[-1].counts == (2, 0, 0, 0)
    assert buckets[-2].counts == (0, 1, 0, 0)
    assert buckets[-4].counts == (0, 0, 1, 0)
    assert buckets[-24].counts == (0, 0, 0, 1)
    assert charts.totals(buckets) == {"received": 2, "duplicate": 1, "failed": 1, "rejected": 1}


def test_a_full_log_younger_than_a_day_says_what_it_covers() -> None:
    now = 1_750_000_000.0
    log = [entry("received", now - i * 60) for i in range(10)]
    full = charts.window("r", log, 10, now)
    assert full.partial
    assert full.since == now - 9 * 60
    assert full.describe().startswith("in the last 10 attempts (since ")
    roomy = charts.window("r", log, 11, now)
    assert not roomy.partial and roomy.describe() == "in the last 24 hours"
    old = charts.window("r", [*log, entry("received", now - 2 * 86400)], 11, now)
    assert not old.partial


def test_secret_shares_and_the_rotation_verdict() -> None:
    now = 1_750_000_000.0
    log = [
        entry("received", now - 10, 0),
        entry("duplicate", now - 20, 0),
        entry("error", now - 30, 1),
        entry("replayed", now - 5, 1),  # an operator's replay, not a sender's signature
        entry("rejected", now - 40, None),
    ]
    share = charts.secret_share(charts.window("r", log, 1000, now), keys=2)
    assert share.counts == (2, 1)
    assert share.last_used == (now - 10, now - 30)
    assert share.verdict().startswith(
        "1 of 3 verified attempts (33.3%) in the last 24 hours used an older secret"
    )
    done = charts.secret_share(charts.window("r", log[:2], 1000, now), keys=2)
    assert (
        done.verdict()
        == "Every verified attempt in the last 24 hours used secret 0, the newest; none used an older one."
    )
    quiet = charts.secret_share(charts.window("r", [], 1000, now), keys=2)
    assert quiet.counts == (0, 0) and "nothing to tell yet" in quiet.verdict()
    single = charts.secret_share(charts.window("r", log[:2], 1000, now), keys=1)
    assert single.verdict() == "One secret: no rotation under way."
    removed = charts.secret_share(charts.window("r", log, 1000, now), keys=1)  # index 1 seen, since removed
    assert removed.counts == (2, 1)


def test_the_svg_is_well_formed_script_free_and_escaped() -> None:
    now = 1_750_000_000.0
    log = [entry(s, now - i * 700) for i, s in enumerate(charts.OUTCOME_OF)]
    w = charts.window("<script>", log, 1000, now)
    for svg in (
        charts.hourly_svg(charts.hourly([w], now), label='a "label" <b>'),
        charts.share_svg(charts.secret_share(w, 2)),
        charts.share_svg(charts.secret_share(charts.window("empty", [], 10, now), 2)),
        charts.hourly_svg(charts.hourly([], now), label="empty"),
    ):
        root = ET.fromstring(str(svg))
        assert root.tag == SVG + "svg"
        for element in root.iter():
            assert element.tag.removeprefix(SVG) in {"svg", "title", "line", "text", "g", "rect"}
            assert not [a for a in element.attrib if a.startswith("on") or a == "style"]
        assert "<script>" not in str(svg)


def _bars(page: bytes) -> int:
    return page.count(b'<rect class="o-')


def test_the_list_page_draws_the_day(shop: Shop) -> None:
    seed_day(shop)
    page = shop.admin().get("/hooks/")
    assert _bars(page.data) > 24
    assert b"received <b>" in page.data
    assert b"13 of 98 verified attempts" in page.data
    assert b"reaches back only" not in page.data
    billing = shop.admin().get("/hooks/?receiver=billing")
    assert _bars(billing.data) == 9  # one bar segment per hour with an attempt


def test_a_small_log_is_named_on_the_page(shop_factory: Callable[..., Shop]) -> None:
    shop = shop_factory(store=MemoryStore(log_size=5))
    for i in range(8):
        shop.post({"id": f"ord_{i}", "type": "order.created"}, secret=OLD if i < 4 else "whsec-new-secret")
        shop.clock.advance(60)
    page = shop.admin().get("/hooks/?receiver=hooks")
    text = page.get_data(as_text=True)
    assert "keeps its last 5 attempts" in text
    assert "in the last 5 attempts (since" in text
    assert shop.clock() < NOW
