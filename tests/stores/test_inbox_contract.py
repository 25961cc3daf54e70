"""The inbox half of the store protocol, one contract for every backend.

Time is the injected ``now`` throughout, as in ``test_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flask_hooks.core.errors import InFlight, LeaseLost
from flask_hooks.core.inbox import MAX_ATTEMPTS, Kept
from flask_hooks.core.store import DedupeStore, LogEntry, Reply
from flask_hooks.stores.memory import MemoryStore
from flask_hooks.stores.redis import RedisStore
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
LEASE, TTL, RETENTION = 30.0, 3600.0, 7 * 86400.0
NS = "app:hooks"

MakeStore = Callable[..., DedupeStore]


def kept(n: int = 1, type: str = "payment.succeeded", body: bytes | None = None) -> Kept:
    return Kept(
        type=type,
        body=body if body is not None else b'{"id": "evt_%d", "n": %d}' % (n, n),
        headers=(("Content-Type", "application/json"), ("Authorization", "[redacted]")),
        received_at=T0 + n,
        secret_index=n % 2,
        retention=RETENTION,
    )


def attempt(id: str, status: str, at: float = T0, **kw: object) -> LogEntry:
    return LogEntry(
        id, "payment.succeeded", status, 200 if status == "received" else 500, received_at=at, **kw
    )  # type: ignore[arg-type]


class InboxContract:
    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self, make_store: MakeStore) -> Iterator[DedupeStore]:
        store = make_store()
        try:
            yield store
        finally:
            store.close()

    def receive(
        self, store: DedupeStore, n: int, *, fail: bool = False, type: str = "payment.succeeded"
    ) -> str:
        id = f"evt_{n}"
        claim = store.claim(NS, id, now=T0 + n, lease=LEASE, ttl=TTL, keep=kept(n, type))
        assert claim.state == "new"
        if fail:
            entry = attempt(
                id, "error", T0 + n, error="ValueError: boom\nTraceback ...", failed="billing.book"
            )
            store.release(NS, id, claim.token, now=T0 + n, entry=entry)
        else:
            store.complete(
                NS,
                id,
                claim.token,
                outcome="received",
                reply=None,
                now=T0 + n,
                ttl=TTL,
                entry=attempt(id, "received", T0 + n),
            )
        return id

    # Keeping ---------------------------------------------------------------------

    def test_a_claim_keeps_the_exact_body_and_headers(self, store: DedupeStore) -> None:
        body = b'{"id":"evt_1", "x": "\\u00e9\xc3\xa9\x00"}'
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1, body=body))
        got = store.get(NS, "evt_1")
        assert got is not None
        assert (got.id, got.type, got.body, got.secret_index) == ("evt_1", "payment.succeeded", body, 1)
        assert got.headers == kept(1).headers
        assert got.received_at == T0 + 1
        assert got.status_at(T0 + 1) == "in-flight"
        assert got.status_at(T0 + LEASE + 1) == "failed"  # its worker died

    def test_nothing_is_kept_without_keep(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert store.get(NS, "evt_1") is None
        assert store.get(NS, "never") is None

    def test_a_retry_keeps_the_first_copy_and_every_attempt(self, store: DedupeStore) -> None:
        id = self.receive(store, 1, fail=True)
        retry = store.claim(NS, id, now=T0 + 60, lease=LEASE, ttl=TTL, keep=kept(1, body=b"{}"))
        store.complete(
            NS,
            id,
            retry.token,
            outcome="received",
            reply=Reply(200, b"ok"),
            now=T0 + 61,
            ttl=TTL,
            entry=attempt(id, "received", T0 + 60),
        )
        store.log(NS, attempt(id, "duplicate", T0 + 90))
        got = store.get(NS, id)
        assert got is not None
        assert got.body == kept(1).body
        assert got.status == "received"
        assert [a.status for a in got.attempts] == ["error", "received", "duplicate"]
        assert got.attempts[0].error.startswith("ValueError: boom")
        assert got.attempts[0].failed == "billing.book"
        assert [e.status for e in store.deliveries(NS)] == ["duplicate", "received", "error"]

    def test_attempts_are_bounded(self, store: DedupeStore) -> None:
        id = self.receive(store, 1)
        for n in range(MAX_ATTEMPTS + 5):
            store.log(NS, attempt(id, "duplicate", T0 + 10 + n))
        got = store.get(NS, id)
        assert got is not None
        assert len(got.attempts) == MAX_ATTEMPTS
        assert got.attempts[-1].received_at == T0 + 10 + MAX_ATTEMPTS + 4

    def test_marks_are_shown(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        store.mark(NS, "evt_1", claim.token, "first", Reply(200, b"1"), now=T0)
        store.release(NS, "evt_1", claim.token, now=T0, entry=attempt("evt_1", "error"))
        got = store.get(NS, "evt_1")
        assert got is not None
        assert dict(got.handlers) == {"first": Reply(200, b"1")}
        assert got.status == "failed"

    # Retention --------------------------------------------------------------------

    def test_kept_past_the_dedupe_ttl_until_the_retention(self, store: DedupeStore) -> None:
        id = self.receive(store, 1)
        later = T0 + TTL + 10
        again = store.claim(NS, id, now=later, lease=LEASE, ttl=TTL, keep=kept(1))
        assert again.state == "new"  # no longer a duplicate...
        got = store.get(NS, id)
        assert got is not None and len(got.attempts) == 1  # ...but still kept, with its history
        store.release(NS, id, again.token, now=later)
        assert store.purge(NS, now=T0 + RETENTION) == 0
        assert store.purge(NS, now=T0 + TTL + RETENTION + 100) == 1
        assert store.get(NS, id) is None

    def test_purge_by_age_spares_deliveries_in_flight_and_is_bounded(self, store: DedupeStore) -> None:
        for n in range(1, 8):
            self.receive(store, n)
        store.claim(NS, "evt_0", now=T0, lease=LEASE, ttl=TTL, keep=kept(0))  # in flight
        assert store.purge(NS, now=T0 + 10, received_before=T0 + 6, limit=3) == 3
        assert store.purge(NS, now=T0 + 10, received_before=T0 + 6, limit=3) == 2
        assert store.purge(NS, now=T0 + 10, received_before=T0 + 6, limit=3) == 0
        left = store.query(NS, now=T0 + 10)
        assert [s.id for s in left] == ["evt_7", "evt_6", "evt_0"]

    # Queries ----------------------------------------------------------------------

    def test_query_skips_deliveries_past_their_retention_before_its_limit(self, store: DedupeStore) -> None:
        short = kept(2)._replace(retention=60.0)  # kept while the retention was shorter
        for n, keep in ((1, kept(1)), (2, short)):
            claim = store.claim(NS, f"evt_{n}", now=T0, lease=LEASE, ttl=10.0, keep=keep)
            store.release(NS, f"evt_{n}", claim.token, now=T0)
        later = T0 + 3600
        assert [s.id for s in store.query(NS, now=later, status="failed", limit=1)] == ["evt_1"]
        assert [s.id for s in store.query(NS, now=later, limit=5)] == ["evt_1"]
        got = store.get(NS, "evt_2")
        assert got is None or not got.kept_at(later)  # Redis expires it itself

    def test_query_filters_and_pages_newest_first(self, store: DedupeStore) -> None:
        for n in range(1, 7):
            self.receive(store, n, fail=n % 3 == 0, type="payment.refunded" if n % 2 else "payment.succeeded")
        store.claim(NS, "evt_9", now=T0 + 9, lease=LEASE, ttl=TTL, keep=kept(9, "invoice.paid"))
        now = T0 + 10
        assert [s.id for s in store.query(NS, now=now)] == ["evt_9", *(f"evt_{n}" for n in range(6, 0, -1))]
        assert [s.id for s in store.query(NS, now=now, status="failed")] == ["evt_6", "evt_3"]
        assert [s.id for s in store.query(NS, now=now, status="in-flight")] == ["evt_9"]
        assert [s.id for s in store.query(NS, now=T0 + 100, status="failed")] == ["evt_9", "evt_6", "evt_3"]
        assert [s.id for s in store.query(NS, now=now, type="payment.*", status="received")] == [
            "evt_5",
            "evt_4",
            "evt_2",
            "evt_1",
        ]
        assert [s.id for s in store.query(NS, now=now, type="payment.refunded")] == [
            "evt_5",
            "evt_3",
            "evt_1",
        ]
        assert [s.id for s in store.query(NS, now=now, type="invoice")] == ["evt_9"]
        assert [s.id for s in store.query(NS, now=now, since=T0 + 2, until=T0 + 4)] == ["evt_3", "evt_2"]
        first = store.query(NS, now=now, limit=3)
        last = first[-1]
        second = store.query(NS, now=now, limit=3, before=(last.received_at, last.id))
        assert [s.id for s in first + second] == ["evt_9", "evt_6", "evt_5", "evt_4", "evt_3", "evt_2"]
        assert store.query("other", now=now) == []

    def test_type_patterns_are_not_sql_wildcards(self, store: DedupeStore) -> None:
        store.claim(NS, "a", now=T0, lease=LEASE, ttl=TTL, keep=kept(1, "pay_x.done"))
        store.claim(NS, "b", now=T0, lease=LEASE, ttl=TTL, keep=kept(2, "payyx.done"))
        store.claim(NS, "c", now=T0, lease=LEASE, ttl=TTL, keep=kept(3, "100%.done"))
        assert [s.id for s in store.query(NS, now=T0, type="pay_x.*")] == ["a"]
        assert [s.id for s in store.query(NS, now=T0, type="100%")] == ["c"]

    # Replay: reopen ----------------------------------------------------------------

    def test_reopen_a_done_delivery_keeps_marks_but_those_to_rerun(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        store.mark(NS, "evt_1", claim.token, "second", Reply(200, b"2"), now=T0)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL)
        again = store.reopen(NS, "evt_1", now=T0 + 5, lease=LEASE, rerun={"second"})
        assert again.state == "new"
        assert dict(again.handlers) == {"first": None}
        busy = store.claim(NS, "evt_1", now=T0 + 6, lease=LEASE, ttl=TTL)
        assert busy.state == "inflight"  # a sender's retry waits for the replay
        assert store.reopen(NS, "evt_1", now=T0 + 6, lease=LEASE).state == "inflight"
        store.complete(
            NS,
            "evt_1",
            again.token,
            outcome="received",
            reply=None,
            now=T0 + 7,
            ttl=TTL,
            entry=attempt("evt_1", "replayed", T0 + 5),
        )
        got = store.get(NS, "evt_1")
        assert got is not None
        assert (got.status, got.attempts[-1].status) == ("received", "replayed")

    def test_reopen_of_an_unknown_id_is_a_lookup_error(self, store: DedupeStore) -> None:
        with pytest.raises(LookupError):
            store.reopen(NS, "nope", now=T0, lease=LEASE)
        store.claim(NS, "bare", now=T0, lease=LEASE, ttl=TTL)  # not kept: nothing to replay
        store.release(NS, "bare", store.claim(NS, "x", now=T0, lease=LEASE, ttl=TTL).token, now=T0)
        with pytest.raises(LookupError):
            store.reopen(NS, "bare", now=T0 + LEASE + 1, lease=LEASE)

    def test_reopen_takes_over_an_expired_claim(self, store: DedupeStore) -> None:
        first = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        again = store.reopen(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE)
        assert again.state == "new"
        with pytest.raises(LeaseLost):
            store.complete(NS, "evt_1", first.token, outcome="received", reply=None, now=T0 + 40, ttl=TTL)

    def test_reopen_of_a_completed_delivery_says_so_in_the_same_step(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=Reply(200, b"42"), now=T0, ttl=TTL)
        done = store.reopen(NS, "evt_1", now=T0 + 5, lease=LEASE)  # nothing to re-run: left alone
        assert (done.state, done.outcome, done.reply) == ("done", "received", Reply(200, b"42"))
        assert store.claim(NS, "evt_1", now=T0 + 6, lease=LEASE, ttl=TTL).state == "done"
        again = store.reopen(NS, "evt_1", now=T0 + 7, lease=LEASE, rerun={"first"})
        assert (again.state, again.outcome, again.reply) == ("new", "received", Reply(200, b"42"))
        assert dict(again.handlers) == {}
        failed = store.claim(NS, "evt_2", now=T0, lease=LEASE, ttl=TTL, keep=kept(2))
        store.release(NS, "evt_2", failed.token, now=T0)
        retry = store.reopen(NS, "evt_2", now=T0 + 5, lease=LEASE)
        assert (retry.state, retry.outcome, retry.reply) == ("new", "", None)

    def test_reopen_marks_the_handlers_a_completed_delivery_keeps(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        store.mark(NS, "evt_1", claim.token, "first", Reply(200, b"1"), now=T0)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL)
        again = store.reopen(NS, "evt_1", now=T0 + 5, lease=LEASE, rerun={"second"}, keep={"first", "last"})
        assert dict(again.handlers) == {"first": Reply(200, b"1"), "last": None}
        store.release(NS, "evt_1", again.token, now=T0 + 6)  # the re-run failed
        retry = store.claim(NS, "evt_1", now=T0 + 7, lease=LEASE, ttl=TTL)
        assert (retry.state, set(retry.handlers)) == ("new", {"first", "last"})  # runs "second" only
        failed = store.claim(NS, "evt_2", now=T0, lease=LEASE, ttl=TTL, keep=kept(2))
        store.release(NS, "evt_2", failed.token, now=T0)
        owed = store.reopen(NS, "evt_2", now=T0 + 5, lease=LEASE, rerun={"a"}, keep={"b"})
        assert dict(owed.handlers) == {}  # not completed: "b" did not succeed

    # Forget -------------------------------------------------------------------------

    def test_forget_refuses_a_delivery_a_live_claim_holds(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL, keep=kept(1))
        with pytest.raises(InFlight) as busy:
            store.forget(NS, "evt_1", now=T0 + 10, lease=LEASE)
        assert busy.value.after == pytest.approx(LEASE - 10)
        assert store.get(NS, "evt_1") is not None
        assert store.forget(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE) is True  # its worker died
        store.claim(NS, "evt_2", now=T0 + 7200, lease=LEASE, ttl=TTL, keep=kept(2))  # a clock 2 h ahead
        assert store.forget(NS, "evt_2", now=T0, lease=LEASE) is True  # a stale lease holds nothing

    def test_forget_lets_the_next_redelivery_run_afresh(self, store: DedupeStore) -> None:
        id = self.receive(store, 1)
        assert store.forget(NS, id, now=T0 + 5, lease=LEASE) is True
        assert store.forget(NS, id, now=T0 + 5, lease=LEASE) is False
        assert store.get(NS, id) is None
        assert store.claim(NS, id, now=T0 + 5, lease=LEASE, ttl=TTL).state == "new"


class TestMemoryInbox(InboxContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda **kw: MemoryStore(**kw)


class TestSqliteInbox(InboxContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda **kw: SqliteStore(str(tmp_path / "hooks.sqlite3"), **kw)


class TestRedisInbox(InboxContract):
    @pytest.fixture
    def make_store(self, redis_url: str) -> MakeStore:
        return lambda **kw: RedisStore(redis_url, **kw)
