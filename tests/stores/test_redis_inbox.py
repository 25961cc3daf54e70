"""What only the Redis inbox does: body keys with their own TTL, the index, bounded scans."""

from __future__ import annotations

import json

import pytest
import redis
from redis.crc import key_slot

from flask_hooks.core.errors import StoreUnavailable
from flask_hooks.core.inbox import Kept
from flask_hooks.stores.base import LogEntry, Reply
from flask_hooks.stores.redis import RedisStore

T0 = 1_700_000_000.0
DAY = 86400.0
NS = "ns"


def kept(at: float = T0, *, body: bytes = b'{"id": 1}', retention: float = 7 * DAY) -> Kept:
    return Kept("a.b", body, (("Content-Type", "application/json"),), at, 0, retention)


def key(kind: str, id: str = "") -> str:
    return f"hooks:{{{NS}}}:{kind}" + (f":{id}" if id else "")


@pytest.fixture
def store(redis_url: str) -> RedisStore:
    return RedisStore(redis_url)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def receive(store: RedisStore, id: str, at: float, *, fail: bool = False) -> None:
    claim = store.claim(NS, id, now=at, lease=30, ttl=3600, keep=kept(at))
    entry = LogEntry(id, "a.b", "error" if fail else "received", 500 if fail else 200, received_at=at)
    if fail:
        store.release(NS, id, claim.token, now=at, entry=entry)
    else:
        store.complete(NS, id, claim.token, outcome="received", reply=None, now=at, ttl=3600, entry=entry)


def test_the_body_lives_in_its_own_key_with_the_retention_as_ttl(
    store: RedisStore, client: redis.Redis
) -> None:
    body = b'{"id": 1, "pad": "' + b"x" * 4096 + b'"}'
    claim = store.claim(NS, "evt_1", now=T0, lease=30, ttl=3600, keep=kept(body=body))
    entry = LogEntry("evt_1", "a.b", "received", 200, received_at=T0)
    store.complete(NS, "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=3600, entry=entry)
    assert client.get(key("b", "evt_1")) == body
    assert body not in client.hgetall(key("d", "evt_1")).values()  # claims never read the body
    week = 7 * DAY * 1000
    for kind in "dba":
        assert week - 5000 < client.pttl(key(kind, "evt_1")) <= week  # all three go together
    assert client.hget(key("d", "evt_1"), "retained_until") == repr(T0 + 7 * DAY).encode()
    assert client.hget(key("d", "evt_1"), "expires_at") == repr(T0 + 3600).encode()  # dedupe: ttl
    assert client.zscore(key("i"), "evt_1") == T0
    # Persisted formats carry a version.
    assert json.loads(client.hget(key("d", "evt_1"), "headers") or b"")["v"] == 1
    assert [json.loads(line)["v"] for line in client.lrange(key("a", "evt_1"), 0, -1)] == [1]
    keys = (key("d", "evt_1"), key("b", "evt_1"), key("a", "evt_1"), key("i"))
    slots = {key_slot(k.encode()) for k in keys}
    assert slots == {key_slot(b"{ns}")}


def test_a_retry_keeps_the_first_body_and_extends_the_retention(
    store: RedisStore, client: redis.Redis
) -> None:
    receive(store, "evt_1", T0, fail=True)
    later = T0 + 5 * DAY
    store.claim(NS, "evt_1", now=later, lease=30, ttl=3600, keep=kept(later, body=b"second"))
    assert client.get(key("b", "evt_1")) == b'{"id": 1}'
    assert client.hget(key("d", "evt_1"), "retained_until") == repr(later + 7 * DAY).encode()
    assert client.zscore(key("i"), "evt_1") == T0  # still listed when it first arrived


def test_a_renewed_lease_outlives_a_short_retention(store: RedisStore, client: redis.Redis) -> None:
    claim = store.claim(NS, "evt_1", now=T0, lease=10, ttl=10, keep=kept(retention=10))
    store.renew(NS, "evt_1", claim.token, now=T0 + 8, lease=60)
    for kind in "db":
        assert 59_000 < client.pttl(key(kind, "evt_1")) <= 60_000
    got = store.get(NS, "evt_1")
    assert got is not None and got.body == b'{"id": 1}'


def test_a_decode_responses_client_gets_the_exact_bytes(redis_url: str) -> None:
    store = RedisStore(redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2))
    body = b"\xff\x00not utf-8 \xc3"
    claim = store.claim(NS, "evt_1", now=T0, lease=30, ttl=3600, keep=kept(body=body))
    store.mark(NS, "evt_1", claim.token, "h", Reply(201, b"\xfe"), now=T0)
    [row] = store.query(NS, now=T0)
    assert row.body == body
    assert dict(row.handlers) == {"h": Reply(201, b"\xfe")}
    assert store.get(NS, "evt_1") == row


def test_pages_follow_received_at_then_id_across_ties_and_index_pages(store: RedisStore) -> None:
    ids = [f"evt_{n}" for n in range(250)]
    for n, id in enumerate(ids):
        store.claim(NS, id, now=T0, lease=30, ttl=3600, keep=kept(T0 + n % 3))  # three scores
    expected = sorted(((T0 + n % 3, id) for n, id in enumerate(ids)), reverse=True)
    seen: list[tuple[float, str]] = []
    before = None
    while page := store.query(NS, now=T0, limit=7, before=before):
        seen += [(s.received_at, s.id) for s in page]
        before = seen[-1]
    assert seen == expected
    newest = store.query(NS, now=T0, limit=150, until=T0 + 2)
    assert [(s.received_at, s.id) for s in newest] == [p for p in expected if p[0] < T0 + 2][:150]


def test_a_rare_filter_finds_what_lies_behind_many_newer_deliveries(store: RedisStore) -> None:
    """A short answer means no more match: the CLI's bulk replay and the dashboard stop there.

    A bound of 10 * limit + 1000 members per call used to answer [] here.
    """
    receive(store, "old", T0, fail=True)
    for n in range(1011):
        store.claim(NS, f"evt_{n}", now=T0 + 1, lease=30, ttl=3600, keep=kept(T0 + 1 + n))
    assert [s.id for s in store.query(NS, now=T0 + 1, status="failed", limit=1)] == ["old"]
    assert [s.id for s in store.query(NS, now=T0 + 1, type="no.such.*", limit=1)] == []


def test_members_whose_delivery_is_gone_are_trimmed_lazily(store: RedisStore, client: redis.Redis) -> None:
    for n in range(5):
        receive(store, f"evt_{n}", T0 + n)
    client.delete(key("d", "evt_1"), key("d", "evt_3"))  # as the server's TTL would
    assert [s.id for s in store.query(NS, now=T0 + 10)] == ["evt_4", "evt_2", "evt_0"]
    assert client.zcard(key("i")) == 3
    client.delete(key("d", "evt_0"))
    assert store.purge(NS, now=T0 + 10) == 0  # dropped from the index, not counted
    assert sorted(client.zrange(key("i"), 0, -1)) == [b"evt_2", b"evt_4"]
    assert client.exists(key("b", "evt_0"), key("a", "evt_0")) == 0


def test_trimming_during_a_query_skips_no_row_of_the_next_page(
    store: RedisStore, client: redis.Redis
) -> None:
    for n in range(150):
        store.claim(NS, f"evt_{n:03d}", now=T0, lease=30, ttl=3600, keep=kept(T0 + n))
    client.delete(*(key("d", f"evt_{n:03d}") for n in range(100, 150)))  # the newest 50 are gone
    got = store.query(NS, now=T0, limit=100)
    assert [s.id for s in got] == [f"evt_{n:03d}" for n in range(99, -1, -1)]


def test_a_delivery_gone_between_its_two_reads_leaves_no_match_of_its_page_out(
    store: RedisStore, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query reads a page's filter fields, then the whole records of the first ``limit``
    matches. One that expired (or was forgotten) in between left the answer short, and the
    page's later matches were never read: the answer ended early, which the dashboard and
    ``replay --status failed`` take for the end of the inbox."""
    for n in range(4):
        store.claim(NS, f"evt_{n}", now=T0, lease=30, ttl=3600, keep=kept(T0 + n))
    fetch = store._fetch

    def expiring(ns: str, ids: list[str], *, full: bool) -> list[object]:
        if full and "evt_2" in ids:
            client.delete(key("d", "evt_2"))  # gone since its filter fields were read
        return fetch(ns, ids, full=full)  # type: ignore[return-value]

    monkeypatch.setattr(store, "_fetch", expiring)
    assert [s.id for s in store.query(NS, now=T0, limit=2)] == ["evt_3", "evt_1"]


def test_a_newer_delivery_removed_by_another_process_mid_query_skips_no_row(
    store: RedisStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages were read by offset: a newer member removed meanwhile by another process (a
    forget, a purge, another query trimming a member whose delivery expired) moved every
    older one up by one, and the first row of the next page was never read."""
    for n in range(150):
        store.claim(NS, f"evt_{n:03d}", now=T0, lease=30, ttl=3600, keep=kept(T0 + n))
    other = RedisStore(redis_url)
    fetch = store._fetch

    def meanwhile(ns: str, ids: list[str], *, full: bool) -> list[object]:
        if "evt_120" in ids and not full:
            other.forget(NS, "evt_120", now=T0 + 100, lease=30)
        return fetch(ns, ids, full=full)  # type: ignore[return-value]

    monkeypatch.setattr(store, "_fetch", meanwhile)
    got = [s.id for s in store.query(NS, now=T0, limit=150)]
    assert got == [f"evt_{n:03d}" for n in range(149, -1, -1) if n != 120]


def test_purge_removes_every_key_of_a_delivery_a_bounded_batch_at_a_time(
    store: RedisStore, client: redis.Redis
) -> None:
    for n in range(250):
        receive(store, f"evt_{n}", T0 + n)
    assert store.purge(NS, now=T0 + 300, received_before=T0 + 240, limit=200) == 200
    assert store.purge(NS, now=T0 + 300, received_before=T0 + 240, limit=200) == 40
    assert client.zcard(key("i")) == 10
    assert client.keys(key("*", "evt_1*")) == []
    assert len(client.keys(key("b", "*"))) == len(client.keys(key("a", "*"))) == 10


def test_claims_sweep_the_index_of_deliveries_the_server_expired(
    store: RedisStore, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's TTLs remove a delivery's keys, not its index member: with nobody purging,
    the index grew by one member per delivery for ever, until a noeviction Redis was full."""
    for n in range(64):  # the 64th claim sweeps: nothing is past its retention yet
        store.claim(NS, f"old_{n}", now=T0, lease=30, ttl=3600, keep=kept(T0, retention=60))
    assert client.zcard(key("i")) == 64
    client.delete(*(key("d", f"old_{n}") for n in range(0, 64, 2)))  # as the server's TTLs do
    later = T0 + 4000
    for n in range(64):
        store.claim(NS, f"new_{n}", now=later, lease=30, ttl=3600, keep=kept(later, retention=60))
    assert client.zcard(key("i")) == 64  # gone and past retention: swept, keys and all
    assert client.keys(key("*", "old_*")) == []

    def down(*args: object, **kwargs: object) -> int:
        raise StoreUnavailable()

    monkeypatch.setattr(store, "_purge_oldest", down)
    for n in range(64):  # a sweep that fails leaves the claim that swept as it was
        assert store.claim(NS, f"more_{n}", now=later, lease=30, ttl=3600, keep=kept(later)).state == "new"


def test_records_from_before_the_inbox_still_work(store: RedisStore, client: redis.Redis) -> None:
    reply = json.dumps(Reply(200, b"ok").to_json())
    old = {"state": "done", "token": "", "expires_at": repr(T0 + 60), "reply": reply, "outcome": "received"}
    client.hset(key("d", "old"), mapping=old)
    assert store.claim(NS, "old", now=T0, lease=30, ttl=3600).reply == Reply(200, b"ok")
    assert store.get(NS, "old") is None
    with pytest.raises(LookupError):
        store.reopen(NS, "old", now=T0, lease=30)
    store.log(NS, LogEntry("old", "a.b", "duplicate", 200))  # logged, no attempts key made
    assert client.exists(key("a", "old")) == 0
