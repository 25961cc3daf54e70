"""One contract, every backend (cachelib's ``tests/common.py`` pattern).

Each subclass only says how to build its store; time is always the
injected ``now``, so lease and TTL expiry need no sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flask_hooks.core.errors import LeaseLost
from flask_hooks.stores import DedupeStore
from flask_hooks.stores.base import LogEntry, Reply
from flask_hooks.stores.memory import MemoryStore
from flask_hooks.stores.redis import RedisStore
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
LEASE = 30.0
TTL = 3600.0
NS = "hooks"

MakeStore = Callable[..., DedupeStore]


def entry(n: int, status: str = "received") -> LogEntry:
    return LogEntry(id=f"evt_{n}", type="thing.done", status=status, code=200, received_at=T0 + n)


class StoreContract:
    """The state machine every :class:`DedupeStore` implements."""

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

    # Claim states -----------------------------------------------------------

    def test_first_claim_is_new_with_a_token(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert claim.state == "new"
        assert len(claim.token) >= 16
        assert dict(claim.handlers) == {}

    def test_second_claim_is_in_flight_for_the_rest_of_the_lease(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        busy = store.claim(NS, "evt_1", now=T0 + 10.5, lease=LEASE, ttl=TTL)
        assert busy.state == "inflight"
        assert busy.token == ""
        assert busy.retry_after == pytest.approx(LEASE - 10.5)

    def test_expired_lease_is_taken_over_with_a_new_token(self, store: DedupeStore) -> None:
        first = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        second = store.claim(NS, "evt_1", now=T0 + LEASE, lease=LEASE, ttl=TTL)
        assert second.state == "new"
        assert second.token != first.token

    def test_completed_delivery_is_done_with_reply_and_outcome(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        reply = Reply(202, b"\x00\xffbinary \xe2\x9c\x93", "application/octet-stream")
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=reply, now=T0 + 1, ttl=TTL)
        done = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
        assert done.state == "done"
        assert done.reply == reply
        assert done.outcome == "received"
        assert done.token == ""

    def test_completion_without_reply(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.complete(NS, "evt_1", claim.token, outcome="ignored", reply=None, now=T0, ttl=TTL)
        done = store.claim(NS, "evt_1", now=T0 + LEASE * 3, lease=LEASE, ttl=TTL)
        assert (done.state, done.reply, done.outcome) == ("done", None, "ignored")

    def test_namespaces_and_ids_are_independent(self, store: DedupeStore) -> None:
        store.claim("a", "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert store.claim("b", "evt_1", now=T0, lease=LEASE, ttl=TTL).state == "new"
        assert store.claim("a", "evt_2", now=T0, lease=LEASE, ttl=TTL).state == "new"
        assert store.claim("a", "evt:1", now=T0, lease=LEASE, ttl=TTL).state == "new"
        assert store.claim("a", "evt_1", now=T0, lease=LEASE, ttl=TTL).state == "inflight"

    # Tokens -------------------------------------------------------------------

    def test_wrong_token_cannot_mark_or_complete(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.mark(NS, "evt_1", "not-the-token", "h", None, now=T0)
        with pytest.raises(LeaseLost):
            store.complete(NS, "evt_1", "not-the-token", outcome="received", reply=None, now=T0, ttl=TTL)
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "inflight"

    def test_unknown_delivery_cannot_be_completed(self, store: DedupeStore) -> None:
        with pytest.raises(LeaseLost):
            store.complete(NS, "nope", "token", outcome="received", reply=None, now=T0, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.mark(NS, "nope", "token", "h", None, now=T0)
        store.release(NS, "nope", "token", now=T0)  # a no-op, never an error

    def test_worker_whose_lease_was_taken_over_loses(self, store: DedupeStore) -> None:
        old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        new = store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.complete(NS, "evt_1", old.token, outcome="received", reply=None, now=T0 + 40, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.mark(NS, "evt_1", old.token, "h", None, now=T0 + 40)
        store.release(NS, "evt_1", old.token, now=T0 + 40)
        still = store.claim(NS, "evt_1", now=T0 + 41, lease=LEASE, ttl=TTL)
        assert still.state == "inflight"
        store.complete(NS, "evt_1", new.token, outcome="received", reply=None, now=T0 + 42, ttl=TTL)
        assert store.claim(NS, "evt_1", now=T0 + 43, lease=LEASE, ttl=TTL).state == "done"

    def test_completed_token_is_spent(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL)
        store.release(NS, "evt_1", claim.token, now=T0)
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "done"

    # Release and handler marks ----------------------------------------------

    def test_release_frees_the_delivery_and_keeps_handler_marks(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        first = Reply(200, b'{"ok":1}')
        store.mark(NS, "evt_1", claim.token, "first", first, now=T0)
        store.mark(NS, "evt_1", claim.token, "second", None, now=T0)
        store.release(NS, "evt_1", claim.token, now=T0 + 1)
        retry = store.claim(NS, "evt_1", now=T0 + 2, lease=LEASE, ttl=TTL)
        assert retry.state == "new"
        assert retry.token != claim.token
        assert dict(retry.handlers) == {"first": first, "second": None}
        with pytest.raises(LeaseLost):
            store.mark(NS, "evt_1", claim.token, "third", None, now=T0 + 3)

    def test_marks_survive_a_lease_takeover(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        retry = store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)
        assert retry.state == "new"
        assert dict(retry.handlers) == {"first": None}

    def test_release_with_a_wrong_token_changes_nothing(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.release(NS, "evt_1", "not-the-token", now=T0)
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "inflight"

    # Lease renewal and clock skew --------------------------------------------

    def test_renewed_lease_holds_the_delivery_past_its_first_end(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.renew(NS, "evt_1", claim.token, now=T0 + 20, lease=LEASE)
        busy = store.claim(NS, "evt_1", now=T0 + LEASE + 5, lease=LEASE, ttl=TTL)
        assert busy.state == "inflight"
        assert busy.retry_after == pytest.approx(20 + LEASE - (LEASE + 5))
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0 + 40, ttl=TTL)
        assert store.claim(NS, "evt_1", now=T0 + 41, lease=LEASE, ttl=TTL).state == "done"

    def test_renewal_keeps_a_record_whose_ttl_is_shorter_than_the_handler(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=10, ttl=10)
        for n in range(1, 6):
            store.renew(NS, "evt_1", claim.token, now=T0 + 8 * n, lease=10)
        assert store.claim(NS, "evt_1", now=T0 + 45, lease=10, ttl=10).state == "inflight"
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0 + 46, ttl=10)

    def test_renew_with_a_wrong_or_spent_token_is_lease_lost(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.renew(NS, "evt_1", "not-the-token", now=T0 + 1, lease=LEASE)
        with pytest.raises(LeaseLost):
            store.renew(NS, "nope", claim.token, now=T0 + 1, lease=LEASE)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0 + 2, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.renew(NS, "evt_1", claim.token, now=T0 + 3, lease=LEASE)
        assert store.claim(NS, "evt_1", now=T0 + 4, lease=LEASE, ttl=TTL).state == "done"

    def test_renew_after_a_takeover_is_lease_lost(self, store: DedupeStore) -> None:
        old = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.claim(NS, "evt_1", now=T0 + LEASE + 1, lease=LEASE, ttl=TTL)
        with pytest.raises(LeaseLost):
            store.renew(NS, "evt_1", old.token, now=T0 + LEASE + 2, lease=LEASE)

    def test_lease_from_a_clock_running_ahead_is_stale(self, store: DedupeStore) -> None:
        skewed = T0 + 7200  # a worker two hours ahead claims, then crashes
        first = store.claim(NS, "evt_1", now=skewed, lease=LEASE, ttl=TTL)
        retry = store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL)
        assert retry.state == "new"
        assert retry.token != first.token

    def test_lease_ending_within_lease_seconds_is_live(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0 + 0.5, lease=LEASE, ttl=TTL)  # a clock slightly ahead
        busy = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        assert busy.state == "inflight"
        assert busy.retry_after == pytest.approx(LEASE + 0.5)

    # TTL ------------------------------------------------------------------------

    def test_done_record_expires_after_ttl(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0 + 5, ttl=100)
        assert store.claim(NS, "evt_1", now=T0 + 104, lease=LEASE, ttl=TTL).state == "done"
        again = store.claim(NS, "evt_1", now=T0 + 105, lease=LEASE, ttl=TTL)
        assert again.state == "new"
        assert dict(again.handlers) == {}

    def test_abandoned_claim_and_its_marks_expire(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=10, ttl=100)
        store.mark(NS, "evt_1", claim.token, "first", None, now=T0)
        store.release(NS, "evt_1", claim.token, now=T0)
        later = store.claim(NS, "evt_1", now=T0 + 100, lease=10, ttl=100)
        assert later.state == "new"
        assert dict(later.handlers) == {}

    def test_record_outlives_a_lease_longer_than_the_ttl(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=50, ttl=10)
        assert store.claim(NS, "evt_1", now=T0 + 40, lease=50, ttl=10).state == "inflight"

    # The delivery log ---------------------------------------------------------

    def test_log_is_newest_first_and_limited(self, store: DedupeStore) -> None:
        for n in range(5):
            store.log(NS, entry(n))
        assert [e.id for e in store.deliveries(NS)] == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
        assert [e.id for e in store.deliveries(NS, limit=2)] == ["evt_4", "evt_3"]
        assert store.deliveries("other") == []

    def test_log_round_trips_every_field(self, store: DedupeStore) -> None:
        full = LogEntry("evt_9", "a.b", "error", 500, "handler failed", 1, T0, 0.25, ("one", "two"))
        store.log(NS, full)
        assert store.deliveries(NS) == [full]

    def test_complete_appends_its_entry(self, store: DedupeStore) -> None:
        claim = store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.log(NS, entry(0, "rejected"))
        store.complete(
            NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=TTL, entry=entry(1)
        )
        assert [e.id for e in store.deliveries(NS)] == ["evt_1", "evt_0"]

    def test_log_filters_by_status(self, store: DedupeStore) -> None:
        for n in range(6):
            store.log(NS, entry(n, "rejected" if n % 2 else "received"))
        rejected = store.deliveries(NS, status="rejected")
        assert [e.id for e in rejected] == ["evt_5", "evt_3", "evt_1"]
        assert [e.id for e in store.deliveries(NS, status="received", limit=1)] == ["evt_4"]
        assert store.deliveries(NS, status="duplicate") == []

    def test_log_is_bounded(self, make_store: MakeStore) -> None:
        store = make_store(log_size=5)
        try:
            for n in range(150):
                store.log(NS, entry(n))
            newest = store.deliveries(NS, limit=50)
            assert [e.id for e in newest] == [f"evt_{n}" for n in range(149, 144, -1)]
        finally:
            store.close()

    def test_close_then_use_again(self, store: DedupeStore) -> None:
        store.claim(NS, "evt_1", now=T0, lease=LEASE, ttl=TTL)
        store.close()
        assert store.claim(NS, "evt_1", now=T0 + 1, lease=LEASE, ttl=TTL).state == "inflight"


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return lambda **kw: MemoryStore(**kw)


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda **kw: SqliteStore(str(tmp_path / "hooks.sqlite3"), **kw)


class TestRedisStore(StoreContract):
    @pytest.fixture
    def make_store(self, redis_url: str) -> MakeStore:
        return lambda **kw: RedisStore(redis_url, **kw)
