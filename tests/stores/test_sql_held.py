"""``SqlStore`` on PostgreSQL holding its connections out of its own pool (``_sql_held``).

What a new delivery sends (one statement for the claim, one for the
completion and its log line), and the guarantees kept: a lost connection
is a 503 and replaced, a failed transaction leaves nothing open, unused
connections go back to the pool, a forked child never touches its
parent's, and a store on an app's own engine (not held) keeps the contract.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

from flask_hooks.core.errors import LeaseLost, StoreUnavailable
from flask_hooks.core.inbox import Kept
from flask_hooks.stores import _sql_engine, _sql_writes
from flask_hooks.stores._sql_rendered import render
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sql import SqlStore
from tests.postgres import PostgresServer, pg_url, postgres  # noqa: F401 - fixtures
from tests.stores.test_contract import MakeStore, StoreContract

T0 = 1_700_000_000.0
LEASE, TTL = 30.0, 3600.0
NS = "app:hooks"


def entry(id: str) -> LogEntry:
    return LogEntry(id=id, type="order.paid", status="received", code=200, received_at=T0)


def deliver(store: SqlStore, id: str, now: float = T0) -> None:
    claim = store.claim(NS, id, now=now, lease=LEASE, ttl=TTL)
    assert claim.state == "new"
    complete(store, id, claim.token, now)


def complete(store: SqlStore, id: str, token: str, now: float = T0) -> None:
    store.complete(NS, id, token, outcome="received", reply=None, now=now, ttl=TTL, entry=entry(id))


@pytest.fixture
def steady(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection counts as idle: nothing is pinged, held connections stay held."""
    monkeypatch.setattr(_sql_engine, "PING_IDLE", 3600.0)


@pytest.fixture
def store(pg_url: str, steady: None) -> Iterator[SqlStore]:  # noqa: F811
    store = SqlStore(pg_url, timeout=2.0)
    try:
        yield store
    finally:
        store.close()


def admin(url: str, sql: str) -> list[Any]:
    """``sql`` on a connection of its own (autocommit), its rows if it returns any."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def backends(url: str) -> list[tuple[int, str]]:
    """(pid, state) of the other sessions on ``url``'s database."""
    return [
        (pid, state)
        for pid, state in admin(
            url,
            "SELECT pid, state FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
    ]


def checked_out(store: SqlStore) -> int:
    return cast(QueuePool, store.engine.pool).checkedout()


def test_a_new_deliverys_claim_and_completion_are_one_statement_each(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    store: SqlStore,
) -> None:
    database = sa.make_url(pg_url).database
    deliver(store, "evt_0")  # the tables, and a connection opened before the logging is on
    store.close()
    admin(pg_url, f'ALTER DATABASE "{database}" SET log_min_messages = log')
    admin(pg_url, f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    start = postgres.log.stat().st_size
    deliver(store, "evt_1")  # on a connection opened now, which logs its statements
    logged = postgres.log.read_bytes()[start:].decode(errors="replace")
    statements = re.findall(r"LOG:  (?:statement|execute [^:]*): (\S+)", logged)
    assert statements == ["INSERT", "WITH"]  # no BEGIN, no COMMIT, no second round trip
    assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
    assert [e.id for e in store.deliveries(NS)] == ["evt_1", "evt_0"]


def test_one_connection_is_held_between_transactions_and_handed_back_at_close(store: SqlStore) -> None:
    deliver(store, "evt_1")
    deliver(store, "evt_2")
    pool = store.engine.pool
    assert checked_out(store) == 1  # the same connection, held: no checkout per transaction
    store.close()
    assert cast(QueuePool, pool).checkedout() == 0


def test_a_connection_unused_for_a_while_goes_back_to_the_pool(
    pg_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sql_engine, "PING_IDLE", -1.0)  # every connection counts as idle at once
    store = SqlStore(pg_url)
    try:
        deliver(store, "evt_1")
        assert checked_out(store) == 0
        deliver(store, "evt_2")  # checked out again (and pinged)
        assert checked_out(store) == 0
    finally:
        store.close()


def test_a_failed_transaction_is_rolled_back_and_the_connection_kept(
    pg_url: str,  # noqa: F811
    store: SqlStore,
) -> None:
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
    for fail in (
        lambda: store.mark(NS, "evt_1", "not-the-token", "h", None, now=T0),
        lambda: store.complete(NS, "evt_1", "not-the-token", outcome="received", reply=None, now=T0, ttl=TTL),
        lambda: store.renew(NS, "evt_1", "not-the-token", now=T0, lease=LEASE),
    ):
        with pytest.raises(LeaseLost):
            fail()
        # Not "idle in transaction": nothing left open, nothing locked.
        assert {state for _, state in backends(pg_url)} == {"idle"}
    assert checked_out(store) == 1
    store.mark(NS, "evt_1", claim.token, "h", None, now=T0)
    store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL)
    again = store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL)
    assert again.state == "done"


def test_a_held_connection_lost_while_unused_is_replaced_at_once(
    pg_url: str,  # noqa: F811
    store: SqlStore,
) -> None:
    """Used without a ping (not idle long), it failed its next statement: a 503, once."""
    deliver(store, "evt_1")
    [(pid, _)] = backends(pg_url)
    admin(pg_url, f"SELECT pg_terminate_backend({pid})")
    deliver(store, "evt_2")  # on a new connection
    assert pid not in [other for other, _ in backends(pg_url)]
    assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"


@pytest.mark.parametrize("how", ["terminated", "restarted"])
@pytest.mark.parametrize("held", [True, False], ids=["held", "engine-given"])
def test_a_connection_lost_during_a_handler_still_records_its_completion(
    postgres: PostgresServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    steady: None,
    held: bool,
    how: str,
) -> None:
    """The session ended while the handler ran (pg_terminate_backend, an immediate restart,
    the role's idle_session_timeout): the completion failed on it, a 503, and the sender's
    retry ran the handler again once the lease ran out (with idle_session_timeout, at every
    retry). An immediate shutdown ends a session without an error, only a warning."""
    engine = None if held else sa.create_engine(pg_url)
    store = SqlStore(pg_url if engine is None else engine, timeout=2.0)
    try:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        if how == "restarted":  # the handler runs; the store's sessions end meanwhile
            postgres.stop(mode="immediate")
            postgres.start()
        for pid, _ in backends(pg_url) if how == "terminated" else ():
            admin(pg_url, f"SELECT pg_terminate_backend({pid})")
        complete(store, "evt_1", claim.token)
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
    finally:
        store.close()
        if engine is not None:
            engine.dispose()


@pytest.mark.parametrize("step", ["complete", "release"])
def test_a_step_that_committed_before_its_connection_broke_is_not_applied_twice(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Tried again on another connection, a completion whose first try had committed (the
    answer lost with the connection) found the claim gone: a 409 and an error saying another
    worker took it over; a release appended its attempt and its log line twice. Each now
    knows its own token in the row, and does nothing more."""
    keep = Kept(type="order.paid", body=b"{}", headers=(), received_at=T0, secret_index=0, retention=TTL)
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=keep)
    finish = _sql_writes.finish
    calls: list[int] = []

    def committed_then_broke(cursor: Any, *args: Any, **kwargs: Any) -> int:
        calls.append(finish(cursor, *args, **kwargs))
        if len(calls) == 1:
            cursor._held.driver.close()  # the answer never came
            broke = psycopg.OperationalError("server closed the connection unexpectedly")
            raise cursor._unavailable(broke, None) from broke  # as the cursor's statement would
        return calls[-1]

    monkeypatch.setattr(_sql_writes, "finish", committed_then_broke)
    if step == "complete":
        complete(store, "evt_1", claim.token)
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
    else:
        store.release(NS, "evt_1", claim.token, now=T0, entry=entry("evt_1"))
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "new"
    assert len(calls) == 2
    assert [e.id for e in store.deliveries(NS, limit=10)] == ["evt_1"]
    kept = store.get(NS, "evt_1")
    assert kept is not None and len(kept.attempts) == 1


def breaking_after(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """``_sql_writes.<name>`` commits its first call, then its connection breaks before the
    answer (as a reset would); what each call returned."""
    step = getattr(_sql_writes, name)
    calls: list[object] = []

    def committed_then_broke(cursor: Any, *args: Any, **kwargs: Any) -> object:
        calls.append(step(cursor, *args, **kwargs))
        if len(calls) == 1:
            driver = cursor._held.driver
            if not driver.autocommit:  # its transaction (begun by the step) commits first
                driver.commit()
            driver.close()
            broke = psycopg.OperationalError("server closed the connection unexpectedly")
            raise cursor._unavailable(broke, None) from broke
        return calls[-1]

    monkeypatch.setattr(_sql_writes, name, committed_then_broke)
    return calls


def test_a_claim_or_a_replay_tried_again_after_it_committed_is_its_own(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tried again, each found a claim in flight (its own, by a token made anew for the retry):
    a 409 for the sender and a replay refused as "in flight", the delivery held for a lease."""
    keep = Kept(type="order.paid", body=b"{}", headers=(), received_at=T0, secret_index=0, retention=TTL)
    calls = breaking_after(monkeypatch, "claim")
    claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=keep)
    assert (claim.state, len(calls)) == ("new", 2)
    store.mark(NS, "evt_1", claim.token, "h", None, now=T0)
    complete(store, "evt_1", claim.token)
    calls = breaking_after(monkeypatch, "reopen")
    again = store.reopen(NS, "evt_1", now=T0 + 1, lease=LEASE, rerun=["h"])
    assert (again.state, again.handlers, len(calls)) == ("new", {}, 2)
    assert again.outcome == "received"
    store.release(NS, "evt_1", again.token, now=T0 + 1)  # the replay failed: a free row, once done
    calls = breaking_after(monkeypatch, "reopen")
    last = store.reopen(NS, "evt_1", now=T0 + 2, lease=LEASE)
    assert (last.state, last.reply, last.outcome, len(calls)) == ("new", None, "", 2)  # as a first try
    complete(store, "evt_1", last.token, now=T0 + 2)


def test_a_log_line_whose_connection_broke_is_not_written_twice(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is best effort: tried again after it had committed, a refused request's line
    (one statement, committed by itself) was there twice, and a duplicate's too."""
    calls = breaking_after(monkeypatch, "append")
    refused = LogEntry(id=None, type=None, status="rejected", code=401, received_at=T0)
    with pytest.raises(StoreUnavailable):
        store.log(NS, refused)
    assert len(calls) == 1
    assert [e.status for e in store.deliveries(NS, limit=10)] == ["rejected"]


def test_an_error_that_invalidated_the_connection_is_tried_again() -> None:
    broke = sa.exc.OperationalError("x", {}, psycopg.OperationalError("x"), connection_invalidated=True)
    assert isinstance(_sql_engine.unavailable(broke), _sql_engine.ConnectionLost)
    refused = sa.exc.OperationalError("x", {}, psycopg.errors.LockNotAvailable("x"))
    assert not isinstance(_sql_engine.unavailable(refused), _sql_engine.ConnectionLost)


def test_psycopg2s_errors_give_their_sqlstate_too() -> None:
    class Psycopg2Error(Exception):
        pgcode = "57P01"

    assert _sql_engine.sqlstate(sa.exc.OperationalError("x", {}, Psycopg2Error())) == "57P01"


def in_forked_child(work: Callable[[], object]) -> None:
    """Run ``work`` in a forked child; it must succeed there."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's outcome is its exit status
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_uses_connections_of_its_own(pg_url: str, store: SqlStore) -> None:  # noqa: F811
    deliver(store, "evt_parent")
    [(parent_pid, _)] = backends(pg_url)
    in_forked_child(lambda: deliver(store, "evt_child"))
    # The parent's held connection was neither used nor closed by the child: no 503, same session.
    assert store.claim(NS, "evt_child", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"
    deliver(store, "evt_parent_2")
    assert parent_pid in [pid for pid, _ in backends(pg_url)]


def test_a_forked_child_closing_the_store_leaves_its_parents_sessions(
    pg_url: str,  # noqa: F811
    store: SqlStore,
) -> None:
    deliver(store, "evt_parent")
    [(parent_pid, _)] = backends(pg_url)
    in_forked_child(store.close)  # before any use in the child: nothing of the parent's is closed
    deliver(store, "evt_parent_2")  # on the same session, no 503
    assert parent_pid in [pid for pid, _ in backends(pg_url)]


def test_connections_held_unused_never_starve_a_read_or_an_atomic_handler(
    pg_url: str,  # noqa: F811
    steady: None,
) -> None:
    store = SqlStore(pg_url, timeout=0.5)
    try:
        store.deliveries(NS)
        pool = cast(QueuePool, store.engine.pool)
        most = pool.size() + 10  # the pool's limit: QueuePool's default max_overflow is 10
        together = threading.Barrier(most)

        def wait_for_the_others(cursor: object) -> None:
            together.wait()

        with ThreadPoolExecutor(most) as threads:  # every connection the pool may open, at once
            list(threads.map(lambda _: store._write(wait_for_the_others), range(most)))
        assert pool.checkedin() == 0 and pool.checkedout() == most  # all held, unused
        assert store.deliveries(NS) == []  # a held one handed back: no wait, no 503
        with pytest.raises(LeaseLost):  # it ran (its fenced mark found no claim): not a 503
            store.atomic(NS, "evt_1", "no-claim", "h", lambda: None, now=T0)
    finally:
        store.close()


def test_the_one_statement_completion_renders_after_the_others_were_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_sql_writes, "_LOGGED", {})  # built anew, as in a fresh process
    sqlite, postgresql = (
        sa.create_engine("sqlite://").dialect,
        sa.create_engine("postgresql+psycopg://").dialect,
    )
    columns = ("state", "token", "lease_until", "status")
    for fenced in (True, False):
        plain = _sql_writes._COMPLETE_FIRST if fenced else _sql_writes._RELEASE_FIRST
        render(plain, sqlite, (*columns, "b_ns", "b_id", "b_token", "b_attempts"))  # SQLite's, first
        text = render(_sql_writes._logged(fenced, columns), postgresql, ()).text
        assert text.startswith("WITH done AS") and "SELECT done.ns" in text


class TestPostgresStoreOnAnEngine(StoreContract):
    """An engine given is the app's: its connections are not held, each transaction is SQLAlchemy's."""

    @pytest.fixture
    def make_store(self, pg_url: str) -> Iterator[MakeStore]:  # noqa: F811
        engine = sa.create_engine(pg_url)
        try:
            yield lambda **kw: SqlStore(engine, **kw)
        finally:
            engine.dispose()
