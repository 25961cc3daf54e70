"""A Redis that may evict keys, or a replica, would forget acknowledged deliveries: the store refuses it.

Each test starts real redis-servers with its own ``--maxmemory`` options
(``maxmemory-policy``: https://redis.io/docs/latest/develop/reference/eviction/)
or ``--replicaof``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.core.errors import ConfigError, StoreUnavailable
from flask_hooks.core.inbox import Kept
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.redis import RedisStore
from flask_hooks.stores.url import open_store
from tests.conftest import generic_post

T0 = 1_700_000_000.0
LIMIT = ("--maxmemory", "10mb")
KEEP = Kept("a.b", b"{}", (), T0, 0, 86400.0)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flask_hooks" and r.levelno >= logging.ERROR]


def use(store: RedisStore, id: str = "evt_1") -> None:
    """One delivery's worth of operations, inbox included, which must all succeed."""
    claim = store.claim("ns", id, now=T0, lease=30, ttl=60, keep=KEEP)
    assert claim.state == "new"
    store.complete("ns", id, claim.token, outcome="received", reply=None, now=T0, ttl=60)
    assert store.claim("ns", id, now=T0, lease=30, ttl=60).state == "done"
    assert [s.id for s in store.query("ns", now=T0) if s.id == id] == [id]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_an_evicting_server_is_refused_by_every_operation(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    url = redis_with(*LIMIT, "--maxmemory-policy", policy)
    store = RedisStore(url)
    operations: list[Callable[[], object]] = [
        lambda: store.claim("ns", "evt_1", now=T0, lease=30, ttl=60),
        lambda: store.mark("ns", "evt_1", "t", "h", None, now=T0),
        lambda: store.renew("ns", "evt_1", "t", now=T0, lease=30),
        lambda: store.complete("ns", "evt_1", "t", outcome="received", reply=None, now=T0, ttl=60),
        lambda: store.release("ns", "evt_1", "t", now=T0),
        lambda: store.log("ns", LogEntry("evt_1", "a", "received", 200)),
        lambda: store.deliveries("ns"),
        lambda: store.claim("ns", "evt_2", now=T0, lease=30, ttl=60, keep=KEEP),
        lambda: store.get("ns", "evt_2"),
        lambda: store.query("ns", now=T0, status="failed"),
        lambda: store.reopen("ns", "evt_2", now=T0, lease=30),
        lambda: store.forget("ns", "evt_2", now=T0, lease=30),
        lambda: store.purge("ns", now=T0),
    ]
    try:
        with caplog.at_level(logging.ERROR, logger="flask_hooks"):
            for operation in operations:
                with pytest.raises(StoreUnavailable):
                    operation()
        assert redis.Redis.from_url(url).dbsize() == 0  # refused before anything was written
        [message] = errors(caplog)  # one log per refusal, not one per operation
        assert f"maxmemory-policy is {policy}" in message
        assert "maxmemory-policy noeviction" in message
        assert "?allow_eviction=true" in message
    finally:
        store.close()


@pytest.mark.parametrize(
    "options",
    [(*LIMIT, "--maxmemory-policy", "noeviction"), ("--maxmemory-policy", "allkeys-lru")],
    ids=["noeviction", "no-memory-limit"],
)
def test_a_server_that_cannot_evict_is_accepted(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture, options: tuple[str, ...]
) -> None:
    store = RedisStore(redis_with(*options))
    try:
        use(store)
    finally:
        store.close()
    assert errors(caplog) == []


def test_allow_eviction_accepts_the_risk(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_with(*LIMIT, "--maxmemory-policy", "allkeys-lru")
    from_url = open_store(url + "?allow_eviction=true&key_prefix=a:", instance_path="/nonexistent")
    assert isinstance(from_url, RedisStore)
    assert (from_url.allow_eviction, from_url.key_prefix) == (True, "a:")
    ready = RedisStore(redis.Redis.from_url(url, socket_timeout=2), key_prefix="b:", allow_eviction=True)
    refused = RedisStore.from_url(url + "?allow_eviction=false")
    try:
        use(from_url)
        use(ready)
        with pytest.raises(StoreUnavailable):
            refused.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
    finally:
        for store in (from_url, ready, refused):
            store.close()
    assert len(errors(caplog)) == 1  # only the store that did not opt in
    with pytest.raises(ConfigError, match="allow_eviction"):
        RedisStore.from_url(url + "?allow_eviction=maybe")


def test_a_ready_client_is_checked_and_a_fixed_policy_is_accepted_at_once(
    redis_with: Callable[..., str],
) -> None:
    url = redis_with(*LIMIT, "--maxmemory-policy", "volatile-ttl")
    admin = redis.Redis.from_url(url)
    store = RedisStore(redis.Redis.from_url(url, decode_responses=True, socket_timeout=2))
    try:
        with pytest.raises(StoreUnavailable):
            store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        admin.config_set("maxmemory-policy", "noeviction")  # no reconnect needed
        use(store)
    finally:
        store.close()


def test_a_policy_that_cannot_be_read_is_refused(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that denies INFO (as managed Redis may) fails closed, and the log says why."""
    url = redis_with()
    redis.Redis.from_url(url).acl_setuser("hooks", enabled=True, passwords=["+pw"], keys=["*"],
                                          commands=["+@all", "-info"])
    store = RedisStore(url.replace("redis://", "redis://hooks:pw@"))
    try:
        with pytest.raises(StoreUnavailable):
            store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        [message] = errors(caplog)
        assert "INFO failed" in message
        assert "?allow_eviction=true" in message
        accepting = RedisStore(url.replace("redis://", "redis://hooks:pw@"), allow_eviction=True)
        use(accepting)  # the risk accepted: nothing left to check the role with either
    finally:
        store.close()


def test_the_policy_is_read_once_per_connection_not_per_command(redis_with: Callable[..., str]) -> None:
    url = redis_with(*LIMIT, "--maxmemory-policy", "noeviction")
    admin = redis.Redis.from_url(url)
    store = RedisStore(url)

    def info_calls() -> int:
        return int(admin.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    try:
        admin.config_resetstat()
        for n in range(10):
            use(store, f"evt_{n}")
        store.deliveries("ns")
        assert info_calls() == 2  # INFO memory and INFO replication, in one round trip
        store.close()  # the next command connects again, so the policy is read again
        use(store, "evt_x")
        assert info_calls() == 5  # the count includes the previous reading's own INFO
    finally:
        store.close()


def test_a_reconnect_reads_the_policy_again(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """A policy changed on a live connection is seen at the next reconnect, as documented."""
    url = redis_with(*LIMIT, "--maxmemory-policy", "noeviction")
    admin = redis.Redis.from_url(url)
    store = RedisStore(url)
    try:
        use(store, "evt_1")
        admin.config_set("maxmemory-policy", "allkeys-lfu")
        use(store, "evt_2")  # the same connection: not rechecked
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(StoreUnavailable):  # redis-py reconnects inside this call
            store.claim("ns", "evt_3", now=T0, lease=30, ttl=60)
        [message] = errors(caplog)
        assert "allkeys-lfu" in message
    finally:
        store.close()


def test_an_app_on_an_evicting_redis_answers_503_and_runs_no_handler(
    redis_with: Callable[..., str], make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_with(*LIMIT, "--maxmemory-policy", "allkeys-random")
    hooks = Hooks()
    runs: list[str] = []

    @hooks.on("*")
    def handle(event: Event) -> None:
        runs.append(event.id)

    app = make_app(hooks, HOOKS_STORE=url)
    payload = {"id": "evt_1", "type": "thing.done"}
    for _ in range(2):
        response = generic_post(app.test_client(), payload)
        assert response.status_code == 503
        assert "Retry-After" in response.headers
    assert runs == []
    assert any("?allow_eviction=true" in message for message in errors(caplog))

    hooks_ok = Hooks()
    hooks_ok.on("*")(handle)
    accepting = make_app(hooks_ok, HOOKS_STORE=url + "?allow_eviction=true")
    assert generic_post(accepting.test_client(), payload).status_code == 200
    assert runs == ["evt_1"]


def fill_up(client: redis.Redis) -> None:
    """Puts Redis about 1 MB over its ``maxmemory``, set from the memory used before the filler:
    just after a large SET, ``used_memory`` also counts that request's query buffer (the value's
    size again) until Redis's client cron frees it a moment later, so a limit read then sat above
    the settled usage and the "full" Redis took the next claim (seen once under load)."""
    used = int(client.info("memory")["used_memory"])
    client.set("filler", b"x" * 2_000_000)
    client.config_set("maxmemory", used + 1_000_000)


def test_a_full_redis_refuses_the_claim_so_no_handler_runs_twice(
    redis_with: Callable[..., str], make_app: Callable[..., Flask]
) -> None:
    """``noeviction`` and over ``maxmemory``: a new id's claim must fail before it writes. Its
    first write was a DEL, which a full Redis allows, so the handler ran, the completion got a
    503, and the sender's retry ran the handler again."""
    url = redis_with("--maxmemory-policy", "noeviction")
    client = redis.Redis.from_url(url)
    hooks = Hooks(lease=1)
    runs: list[str] = []
    hooks.on("*")(lambda event: runs.append(event.id))
    app = make_app(hooks, HOOKS_STORE=url)
    assert generic_post(app.test_client(), {"id": "evt_0", "type": "a.b"}).status_code == 200  # scripts in
    fill_up(client)
    response = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert response.status_code == 503
    assert runs == ["evt_0"]  # refused before the handler, not after it
    client.delete("filler")
    client.config_set("maxmemory", 0)
    assert generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"}).status_code == 200
    assert runs == ["evt_0", "evt_1"]


def test_a_redis_that_fills_up_mid_delivery_still_records_what_its_handlers_did(
    redis_with: Callable[..., str], make_app: Callable[..., Flask]
) -> None:
    """Over ``maxmemory`` after the claim: a handler's mark, a renewal and the completion are
    written (a new id is still refused). Before, they got an OOM error: the handler had run,
    the sender got a 503, and its retry, once the lease ran out, ran the handler again."""
    url = redis_with("--maxmemory-policy", "noeviction")
    client = redis.Redis.from_url(url)
    store = RedisStore(url)
    held = store.claim("ns", "held", now=T0, lease=30, ttl=60)
    hooks = Hooks()
    runs: list[str] = []

    @hooks.on("a.b", name="first")  # its mark is written before the second one runs
    def first(event: Event) -> None:
        runs.append(event.id)
        if event.id == "evt_1":
            fill_up(client)

    hooks.on("a.b", name="second")(lambda event: None)
    app = make_app(hooks, HOOKS_STORE=url)
    try:
        assert generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"}).status_code == 200
        again = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
        assert again.get_json() == {"status": "duplicate"}
        assert generic_post(app.test_client(), {"id": "evt_2", "type": "a.b"}).status_code == 503
        assert runs == ["evt_1"]
        store.renew("ns", "held", held.token, now=T0 + 10, lease=30)
        with pytest.raises(StoreUnavailable):
            store.claim("ns", "new", now=T0, lease=30, ttl=60)
    finally:
        client.config_set("maxmemory", 0)
        store.close()


def port(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def replica_of(redis_with: Callable[..., str], master: str) -> str:
    """A writable replica of ``master``: it takes our writes, then drops them when it resyncs."""
    return redis_with("--replicaof", "127.0.0.1", port(master), "--replica-read-only", "no")


def test_a_writable_replica_is_refused_even_with_allow_eviction(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    master = redis_with()
    replica = replica_of(redis_with, master)
    stores = [RedisStore(replica), RedisStore.from_url(replica + "?allow_eviction=true"), RedisStore(master)]
    try:
        with caplog.at_level(logging.ERROR, logger="flask_hooks"):
            for store in stores[:2]:
                for _ in range(2):
                    with pytest.raises(StoreUnavailable):
                        store.claim("ns", "evt_1", now=T0, lease=30, ttl=60, keep=KEEP)
        assert redis.Redis.from_url(replica).dbsize() == 0  # refused before anything was written
        messages = errors(caplog)
        assert len(messages) == 2  # one per store, not one per operation
        for message in messages:
            assert f"replica of 127.0.0.1:{port(master)}" in message
            assert "Point the store URL at the master" in message
            assert "allow_eviction" not in message  # no opt-out: a replica is never safe
        use(stores[2])
    finally:
        for store in stores:
            store.close()


def test_a_server_made_a_replica_at_runtime_is_refused_at_the_next_connection(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """Read once per connection, as the policy is; a server made master again is accepted at once."""
    master = redis_with()
    url = redis_with("--replica-read-only", "no")
    admin = redis.Redis.from_url(url)
    store = RedisStore(url)
    try:
        use(store, "evt_1")
        admin.replicaof("127.0.0.1", port(master))
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(StoreUnavailable):  # redis-py reconnects inside this call
            store.claim("ns", "evt_2", now=T0, lease=30, ttl=60)
        [message] = errors(caplog)
        assert "replica of 127.0.0.1" in message
        admin.replicaof("NO", "ONE")
        use(store, "evt_3")  # the refused claim of evt_2 ran on the replica: only its answer was refused
    finally:
        store.close()


def test_an_app_on_a_replica_answers_503_and_runs_no_handler(
    redis_with: Callable[..., str], make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    replica = replica_of(redis_with, redis_with())
    hooks = Hooks()
    runs: list[str] = []
    hooks.on("*")(lambda event: runs.append(event.id))
    app = make_app(hooks, HOOKS_STORE=replica + "?allow_eviction=true")
    response = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert runs == []
    assert any("Point the store URL at the master" in message for message in errors(caplog))


def test_a_database_number_out_of_range_is_unavailable_without_policy_advice(
    redis_with: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """``SELECT 99`` fails as the connection is made, in the pipeline that reads INFO: the
    log named the eviction policy as the fix, where the fix is the URL's database."""
    store = RedisStore(redis_with().rsplit("/", 1)[0] + "/99")
    try:
        with pytest.raises(StoreUnavailable) as raised:
            store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
        assert "DB index is out of range" in str(raised.value.__cause__)
        assert errors(caplog) == []
    finally:
        store.close()
