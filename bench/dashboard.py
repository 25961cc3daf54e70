"""The dashboard's first list page with 1,000,000 kept deliveries vs 1,000.

Each store is filled through its own API (``claim`` with the kept
delivery, then ``complete``), the last ``log_size`` with a log line so
both delivery logs are full and the charts cost the same. The page is
rendered through the WSGI app (test client), logged in, as an operator
would load it. Goal: the big store costs at most 2x the small one,
which keyset paging over an index on ``(received_at, id)`` gives; the
memory store filters and sorts every row per query, so it cannot meet it
(it is measured all the same, and says so).

``python -m bench.dashboard [--big N]`` runs this section alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_hooks import Hooks
from flask_hooks.core.inbox import Kept
from flask_hooks.dashboard import Dashboard
from flask_hooks.stores import MemoryStore
from flask_hooks.stores.base import DedupeStore, LogEntry

from .common import SECRET, Result, Row, best_of

SMALL, BIG = 1_000, 1_000_000
GOAL = 2.0
START = 1_700_000_000.0
HEADERS = (("Content-Type", "application/json"), ("X-Webhook-Signature", "0" * 64))


def _fill(store: DedupeStore, ns: str, n: int, now: float) -> None:
    log_from = n - store.log_size
    for i in range(n):
        at = now - (n - i) * 0.05  # 20 a second, newest last
        id = f"evt_{i:08d}"
        body = b'{"id":"%s","type":"order.created","data":{"n":%d}}' % (id.encode(), i)
        claim = store.claim(
            ns, id, now=at, lease=60, ttl=86400, keep=Kept("order.created", body, HEADERS, at, 0, 7 * 86400)
        )
        entry = (
            LogEntry(id, "order.created", "received", 200, secret_index=0, received_at=at)
            if i >= log_from
            else None
        )
        store.complete(ns, id, claim.token, outcome="received", reply=None, now=at, ttl=86400, entry=entry)


def _app(store: DedupeStore, n: int, instance: str) -> tuple[Flask, Any]:
    now = START + BIG * 0.05 + 1
    hooks = Hooks(store=store, secret=SECRET, clock=lambda: now)
    hooks.on("order")(lambda event: None)
    app = Flask("bench_dashboard", instance_path=instance)
    app.config["SECRET_KEY"] = "bench"
    hooks.init_app(app)
    Dashboard(app, allow=lambda: True)
    receiver = hooks.receiver(app)
    _fill(store, receiver.ns, n, now)
    return app, app.test_client()


def _render(client: Any) -> Callable[[], float]:
    def once() -> float:
        started = time.perf_counter()
        page = client.get("/hooks/")
        elapsed = time.perf_counter() - started
        assert page.status_code == 200 and page.data.count(b'class="delivery-link"') == 50, page.status_code
        return elapsed

    return once


def _stores(instance: str) -> list[tuple[str, Callable[[str], DedupeStore]]]:
    stores: list[tuple[str, Callable[[str], DedupeStore]]] = []
    try:
        from flask_hooks.stores.sqlite import SqliteStore

        SqliteStore(os.path.join(instance, "probe.sqlite3")).close()
    except Exception as exc:  # being reworked: measure what works, say what did not
        print(f"dashboard: SqliteStore unusable, skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    else:
        # No fsync while filling: the page reads, and reading is what is measured.
        stores.append(
            ("sqlite", lambda name: SqliteStore(os.path.join(instance, f"{name}.sqlite3"), synchronous="OFF"))
        )
    stores.append(("memory", lambda name: MemoryStore()))
    return stores


def first_page(big: int = BIG) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as instance:
        for kind, make in _stores(instance):
            print(f"dashboard: filling {kind} stores ({SMALL:,} and {big:,} deliveries) ...", file=sys.stderr)
            filled = time.perf_counter()
            small_store, big_store = make("small"), make("big")
            _, small = _app(small_store, SMALL, instance)
            _, large = _app(big_store, big, instance)
            print(f"dashboard: filled in {time.perf_counter() - filled:.0f} s", file=sys.stderr)
            rounds_big = 20 if kind != "memory" else 3
            ours = best_of(rounds_big, _render(large))
            reference = best_of(20, _render(small))
            note = ""
            if kind == "memory":
                note = (
                    "memory store: query() filters and sorts every kept row, so the page grows with the store"
                )
            rows.append(
                Result(
                    "dashboard",
                    f"first list page, {kind} store, {big:,} kept vs {SMALL:,}",
                    ours,
                    reference,
                    "s",
                    GOAL,
                    note,
                )
            )
            for store in (small_store, big_store):
                store.close()
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"dashboard": first_page}


def main(argv: list[str] | None = None) -> int:
    from .common import table

    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--big", type=int, default=BIG, help=f"deliveries in the big store (default {BIG:,})")
    args = parser.parse_args(argv)
    print(table(first_page(args.big)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
