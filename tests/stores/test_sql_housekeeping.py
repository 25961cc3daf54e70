"""``SqlStore``'s log trims and sweeps, on PostgreSQL and on SQLite through SQLAlchemy.

Both once waited for a multiple of 64 (or 256) in the log's sequence, which every
receiver shares: lines that never took one never trimmed or swept.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_hooks.core.store import LogEntry
from flask_hooks.stores import sql as sql_store
from flask_hooks.stores.sql import SqlStore
from tests.helpers import complete_each_then_log_its_duplicate
from tests.postgres import pg_url, postgres  # noqa: F401 - fixtures
from tests.stores.test_sql import url  # noqa: F401 - fixture

T0 = 1_700_000_000.0
NS = "app:hooks"


def count(db: str, sql: str) -> tuple[int, ...]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text(sql)).one())
    finally:
        engine.dispose()


def test_each_receivers_log_is_trimmed_whatever_the_others_write_between(url: str) -> None:  # noqa: F811
    """Two receivers fed in turn: one took every odd line number and kept every line."""
    store = SqlStore(url, log_size=10)
    for n in range(8 * sql_store._TRIM_EVERY):
        for ns in ("billing", "shipping"):
            store.log(ns, LogEntry(f"evt_{n}", "a.b", "received", 200))
    store.close()
    lines = count(
        url,
        "SELECT sum(CASE WHEN ns = 'billing' THEN 1 ELSE 0 END),"
        " sum(CASE WHEN ns = 'shipping' THEN 1 ELSE 0 END) FROM flask_hooks_log",
    )
    assert max(lines) <= 10 + 4 * sql_store._TRIM_EVERY, lines


@pytest.mark.parametrize("first_lines", [1, 2])
def test_the_sweep_runs_whichever_lines_take_the_multiples(url: str, first_lines: int) -> None:  # noqa: F811
    """Each delivery completed, then its duplicate logged: only a completion's line could
    start the sweep, and started odd, the completions never took a multiple."""
    store = SqlStore(url)
    for _ in range(first_lines):
        store.log(NS, LogEntry(None, None, "rejected", 401, received_at=T0))
    deliveries = 4 * sql_store._SWEEP_EVERY
    complete_each_then_log_its_duplicate(store, NS, T0, deliveries)
    store.close()
    # Each expired 60 s after its completion: a sweep removes all but the newest.
    (left,) = count(url, "SELECT count(*) FROM flask_hooks_deliveries")
    assert left < deliveries // 2, left
