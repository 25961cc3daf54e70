"""What only the Redis store does: key layout, server-side TTLs, prefixes, clients."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from redis.crc import key_slot

from flask_hooks import Event, Hooks
from flask_hooks.core.errors import ConfigError, InFlight, LeaseLost
from flask_hooks.core.inbox import Kept
from flask_hooks.stores.base import LogEntry, Reply, lease_is_live
from flask_hooks.stores.redis import RedisStore
from flask_hooks.stores.url import open_store
from tests.conftest import generic_post

T0 = 1_700_000_000.0
KEEP = Kept("a.b", b"{}", (), T0, 0, 86400.0)


def test_records_get_a_server_side_ttl_from_the_passed_times(redis_url: str) -> None:
    store = RedisStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    claim = store.claim("ns", "evt_1", now=T0, lease=30, ttl=120)
    assert 110_000 < client.pttl("hooks:{ns}:d:evt_1") <= 120_000
    store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0 + 1, ttl=10)
    assert 0 < client.pttl("hooks:{ns}:d:evt_1") <= 10_000
    assert client.hget("hooks:{ns}:d:evt_1", "expires_at") == repr(T0 + 11).encode()


def test_log_list_is_trimmed_in_the_same_script(redis_url: str) -> None:
    store = RedisStore(redis_url, log_size=3)
    client = redis.Redis.from_url(redis_url)
    for n in range(10):
        claim = store.claim("ns", f"evt_{n}", now=T0, lease=30, ttl=60)
        store.complete(
            "ns",
            f"evt_{n}",
            claim.token,
            outcome="received",
            reply=None,
            now=T0,
            ttl=60,
            entry=LogEntry(f"evt_{n}", "a", "received", 200),
        )
    assert client.llen("hooks:{ns}:log") == 3
    assert [e.id for e in store.deliveries("ns")] == ["evt_9", "evt_8", "evt_7"]


def test_key_prefixes_separate_applications(redis_url: str) -> None:
    one = RedisStore.from_url(redis_url + "?key_prefix=one:")
    two = open_store(redis_url + "?key_prefix=two:", instance_path="/nonexistent")
    assert isinstance(two, RedisStore)
    assert (one.key_prefix, two.key_prefix) == ("one:", "two:")
    one.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
    assert two.claim("ns", "evt_1", now=T0, lease=30, ttl=60).state == "new"
    assert one.claim("ns", "evt_1", now=T0, lease=30, ttl=60).state == "inflight"


def test_accepts_a_ready_client_with_decoded_responses(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=2)  # old redis-py: none
    store = RedisStore(client, key_prefix="d:")
    claim = store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
    store.mark("ns", "evt_1", claim.token, "first", Reply(201, b"\xff\x00"), now=T0)
    store.release("ns", "evt_1", claim.token, now=T0)
    again = store.claim("ns", "evt_1", now=T0, lease=30, ttl=60)
    assert dict(again.handlers) == {"first": Reply(201, b"\xff\x00")}
    reply = Reply(200, b"{}", "application/json")
    store.complete("ns", "evt_1", again.token, outcome="received", reply=reply, now=T0, ttl=60)
    assert store.claim("ns", "evt_1", now=T0, lease=30, ttl=60).reply == reply
    store.log("ns", LogEntry("evt_1", "a", "received", 200))
    assert [e.id for e in store.deliveries("ns")] == ["evt_1"]


def test_a_ready_client_that_does_not_encode_utf8_is_a_config_error(redis_url: str) -> None:
    """It could not encode an id such as ``evt_\u4e2d``: a 500 for each of its deliveries."""
    with pytest.raises(ConfigError, match="UTF-8, not ascii; build the client with encoding='utf-8'"):
        RedisStore(redis.Redis.from_url(redis_url, encoding="ascii", socket_timeout=2))
    RedisStore(redis.Redis.from_url(redis_url, encoding="UTF8", socket_timeout=2))  # the same codec, named so


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"socket_timeout": None}, "socket_timeout is not set: a Redis that stops answering would hang"),
        ({"socket_timeout": math.inf}, "socket_timeout must be a number of seconds above 0, not inf"),
        ({"socket_timeout": -1}, "socket_timeout must be a number of seconds above 0, not -1"),
        ({"socket_timeout": 2, "socket_connect_timeout": 0}, "socket_connect_timeout must be a number"),
    ],
)
def test_a_ready_client_that_would_hang_or_fail_at_each_connection_is_a_config_error(
    redis_url: str, options: dict[str, Any], message: str
) -> None:
    """The URL's timeouts are checked at ``init_app``; a client's were not. Without one, a Redis
    that stops answering (a network partition, a stopped process) held every request for as
    long; an infinite or negative one was an OverflowError or ValueError at every connection
    (a 500 per delivery), 0 a 503 per delivery."""
    with pytest.raises(ConfigError, match=re.escape(f"RedisStore(client): {message}")):
        RedisStore(redis.Redis.from_url(redis_url, **options))
    RedisStore(redis.Redis.from_url(redis_url, socket_timeout=0.5))  # connecting waits as long


def test_a_client_that_is_no_redis_redis_is_a_config_error(redis_url: str) -> None:
    """An asyncio client's script calls return coroutines: a TypeError, a 500 for every delivery."""
    import redis.asyncio

    with pytest.raises(ConfigError, match=r"takes a redis.Redis, not redis.asyncio.client.Redis"):
        RedisStore(redis.asyncio.Redis.from_url(redis_url))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"takes a redis.Redis, not builtins.object"):
        RedisStore(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "damaged"), [("reply", b"\xff\xfe"), ("outcome", b"\xc3")])
def test_a_record_that_is_not_utf8_is_unavailable_not_a_500(
    redis_url: str,
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    field: str,
    damaged: bytes,
) -> None:
    """Bytes no script writes (a damaged record): 503 and an error naming it, as for one
    that is not JSON; before, the claim's answer raised UnicodeDecodeError, a 500."""
    hooks = Hooks()
    runs: list[str] = []
    hooks.on("*", name="first")(lambda event: runs.append(event.id))
    app = make_app(hooks, HOOKS_STORE=redis_url)
    payload = {"id": "evt_1", "type": "a.b"}
    assert generic_post(app.test_client(), payload).status_code == 200
    client = redis.Redis.from_url(redis_url)
    [key] = client.scan_iter(match="hooks:*:d:evt_1")
    good = client.hget(key, field)
    assert good is not None
    client.hset(key, field, damaged)
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        down = generic_post(app.test_client(), payload)
    assert (down.status_code, down.json) == (503, {"status": "unavailable", "reason": "store unavailable"})
    assert any("cannot be read" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert runs == ["evt_1"]
    client.hset(key, field, good)
    assert generic_post(app.test_client(), payload).json == {"status": "duplicate"}
    assert runs == ["evt_1"]


def test_a_record_removed_mid_handler_is_logged_as_such_not_as_a_lost_lease(
    redis_url: str, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """FLUSHDB (or a restart without persistence) while a handler runs: the completion finds
    no record. Before, the only log line was "lease lost", which sends the operator to the
    lease setting; a claim taken over still logs no error."""
    client = redis.Redis.from_url(redis_url)
    hooks = Hooks()

    @hooks.on("*")
    def handle(event: Event) -> None:
        client.flushdb()

    app = make_app(hooks, HOOKS_STORE=redis_url)
    with caplog.at_level(logging.WARNING, "flask_hooks"):
        response = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert response.status_code == 409  # as before: nothing recorded it, so no 2xx
    removed, lost = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "evt_1 was removed while it was claimed" in removed and "FLUSHDB" in removed
    assert lost.startswith("lease lost on hooks evt_1")  # the pipeline's own line, after the store's
    store = RedisStore(redis_url)
    old = store.claim("ns", "evt_2", now=T0, lease=30, ttl=60)
    store.claim("ns", "evt_2", now=T0 + 31, lease=30, ttl=60)
    caplog.clear()
    for lost in (
        lambda: store.mark("ns", "evt_2", old.token, "h", None, now=T0 + 32),
        lambda: store.renew("ns", "evt_2", old.token, now=T0 + 32, lease=30),
        lambda: store.complete("ns", "evt_2", old.token, outcome="received", reply=None, now=T0, ttl=60),
    ):
        with pytest.raises(LeaseLost):
            lost()
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]
    client.flushdb()
    for gone in (
        lambda: store.mark("ns", "evt_2", old.token, "h", None, now=T0 + 32),
        lambda: store.renew("ns", "evt_2", old.token, now=T0 + 32, lease=30),
    ):
        with pytest.raises(LeaseLost):
            gone()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_in_flight_retry_after_keeps_full_precision(redis_url: str) -> None:
    store = RedisStore(redis_url)
    now = 1_763_900_000.123456
    store.claim("ns", "evt_1", now=now, lease=2.5, ttl=60)
    busy = store.claim("ns", "evt_1", now=now + 2.499999, lease=2.5, ttl=60)
    assert busy.state == "inflight"
    assert 0 < busy.retry_after < 0.00001
    assert store.claim("ns", "evt_1", now=now + 2.5, lease=2.5, ttl=60).state == "new"


def test_renew_extends_the_server_side_ttl_but_never_shortens_it(redis_url: str) -> None:
    store = RedisStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    short = store.claim("ns", "short", now=T0, lease=10, ttl=10)
    store.renew("ns", "short", short.token, now=T0 + 8, lease=30)
    assert 29_000 < client.pttl("hooks:{ns}:d:short") <= 30_000
    assert client.hmget("hooks:{ns}:d:short", "lease_until", "expires_at") == [repr(T0 + 38).encode()] * 2
    long = store.claim("ns", "long", now=T0, lease=30, ttl=3600)
    store.renew("ns", "long", long.token, now=T0 + 10, lease=30)
    assert client.pttl("hooks:{ns}:d:long") > 3_500_000
    assert client.hget("hooks:{ns}:d:long", "expires_at") == repr(T0 + 3600).encode()


@pytest.mark.parametrize(
    "ahead", [-2.5, -2.0, 0.0, 0.9999997, 1.0, 1.0000002, 2.0, 4.1499997, 4.15, 4.1500002, 7200]
)
def test_in_flight_or_stale_exactly_as_lease_is_live_says(redis_url: str, ahead: float) -> None:
    """The claim script draws the line where ``lease_is_live`` does with the store's skew (the
    clocks' drift and a re-send's delay: 1 + 2 + 1 + 0.05 + 0.1 s), to the last bit (ahead=4.15)."""
    store = RedisStore(redis_url)
    assert store.skew == pytest.approx(4.15)
    now, lease = 1_763_900_000.123456, 2.5
    store.claim("ns", "evt_1", now=now + ahead, lease=lease, ttl=60)  # a clock `ahead` seconds off
    live = lease_is_live(now + ahead + lease, now, lease, store.skew)
    assert store.claim("ns", "evt_1", now=now, lease=lease, ttl=60).state == ("inflight" if live else "new")


def test_an_id_with_unusual_characters_round_trips(redis_url: str) -> None:
    """Braces, the key separator, globs, spaces, NUL, non-BMP text: keys are binary-safe."""
    weird = 'evt {other}:d:x/*?[a-z]\\ "\'%\t\x00\u00e9\u4e2d\u2028\U0001f600'
    store = RedisStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    first = store.claim("ns", weird, now=T0, lease=30, ttl=60)
    store.mark("ns", weird, first.token, "h", Reply(200, b"ok"), now=T0)
    store.release("ns", weird, first.token, now=T0)
    again = store.claim("ns", weird, now=T0, lease=30, ttl=60)
    assert dict(again.handlers) == {"h": Reply(200, b"ok")}
    assert store.claim("ns", "evt ", now=T0, lease=30, ttl=60).state == "new"  # a prefix is another id
    entry = LogEntry(weird, "a.b", "received", 200)
    store.complete("ns", weird, again.token, outcome="received", reply=None, now=T0, ttl=60, entry=entry)
    assert store.claim("ns", weird, now=T0, lease=30, ttl=60).state == "done"
    assert store.deliveries("ns") == [entry]
    key = b"hooks:{ns}:d:" + weird.encode()
    assert client.hget(key, "state") == b"done"
    assert key_slot(key) == key_slot(b"{ns}")  # the id's braces do not move it to another slot


def test_a_unix_socket_url_claims_and_completes(
    redis_with: Callable[..., str], make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """``unix:///path`` has an empty netloc: rebuilt with ``urlunsplit``, it lost its ``//``."""
    sock = tmp_path / "r.sock"
    redis_with("--unixsocket", str(sock), "--unixsocketperm", "700")
    hooks = Hooks()
    runs: list[str] = []

    @hooks.on("*")
    def handle(event: Event) -> None:
        runs.append(event.id)

    app = make_app(hooks, HOOKS_STORE=f"unix://{sock}?db=1&key_prefix=u:")
    for _ in range(2):  # the copy is answered from the record
        assert generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"}).status_code == 200
    assert runs == ["evt_1"]
    client = redis.Redis(unix_socket_path=str(sock), db=1)
    [key] = client.scan_iter(match="u:*:d:evt_1")
    assert client.hget(key, "state") == b"done"


@pytest.mark.parametrize(
    ("url", "shown", "reason"),
    [
        ("redis://", "'redis://'", "names no host"),
        ("unix://", "'unix://'", "names no socket"),
        ("unix://?db=0&key_prefix=x:", "'unix://?db=0&key_prefix=x:'", "names no socket"),
        ("redis://:hunter2@localhost:abc/0", "'redis://:***@localhost:abc/0'", "port is not a number from 1"),
        ("redis://localhost:99999/0", "'redis://localhost:99999/0'", "port is not a number from 1"),
        ("redis://localhost:0/0", "'redis://localhost:0/0'", "port is not a number from 1"),
        ("redis://localhost/zero", "'redis://localhost/zero'", "database number"),
        (
            "redis://:hunter2@localhost/0?socket_timeout=abc",
            "'redis://:***@localhost/0?socket_timeout=abc'",
            "Invalid value for",  # redis-py's own reason (how it quotes the name varies)
        ),
        ("redis://localhost/0?no_such=1", "'redis://localhost/0?no_such=1'", "'no_such'"),
        ("rediss://localhost/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs=sometimes", "sometimes"),
        # passwords with a raw "/" or "?" that urllib (and redis-py) split elsewhere
        ("redis://user:hunter2/pw@host:6379/0", "'redis://user:***@host:6379/0'", "percent-encode"),
        ("redis://:hunter2?key_prefix=a@host/0", "'redis://:***@host/0'", "names no host"),
        ("redis://u:1/0?hunter2=x@host/0", "'redis://u:***@host/0'", "options redis-py cannot use"),
        ("redis://:hunter2@[::1:6379/0", "'redis://:***@[::1:6379/0'", "not a URL"),
        # timeouts the socket module refuses at every connection (a 500 per delivery), or 0
        ("redis://:hunter2@localhost/0?socket_timeout=-1", "'redis://:***@localhost/0?", "above 0, not -1.0"),
        ("redis://localhost/0?socket_connect_timeout=nan", "socket_connect_timeout=nan'", "above 0, not nan"),
        ("unix:///tmp/r.sock?socket_timeout=inf", "'unix:///tmp/r.sock?socket_timeout=inf'", "not inf"),
        ("rediss://localhost/0?socket_timeout=0", "socket_timeout=0'", "socket_timeout must be a number"),
        # ids a latin-1 client cannot encode were a 500; an unknown codec a LookupError at init_app
        ("redis://localhost/0?encoding=latin-1", "encoding=latin-1'", "UTF-8, not latin-1"),
        ("redis://localhost/0?encoding=nope", "encoding=nope'", "UTF-8, not nope"),
        # options redis-py takes as objects: as text, a 500 at each connection, or ours replaced
        ("redis://localhost/0?socket_keepalive_options=x", "keepalive_options=x'", "is a Python object"),
        ("unix:///tmp/r.sock?redis_connect_func=f", "redis_connect_func=f'", "redis_connect_func is a"),
        ("rediss://localhost/0?retry=3&credential_provider=x", "retry=3&", "credential_provider is a Python"),
        ("redis://localhost/0?maint_notifications_config=x", "config=x'", "pass a client, RedisStore(redis"),
    ],
)
def test_a_malformed_url_is_a_config_error_at_init_app(
    make_app: Callable[..., Flask], url: str, shown: str, reason: str
) -> None:
    """Not redis-py's ValueError or TypeError (at init_app, or at every delivery), nor the password."""
    with pytest.raises(ConfigError) as info:
        make_app(Hooks(), HOOKS_STORE=url)
    message = str(info.value)
    assert shown in message
    assert reason in message
    assert "hunter2" not in message
    with pytest.raises(ConfigError):  # a URL given to the constructor is checked too
        RedisStore(url.replace("key_prefix=", "prefix="))


def test_a_script_sent_again_answers_as_it_did_and_writes_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's retry sends a script again when a timeout lost its answer: the second run agrees.

    A claim found its own claim (409), a completion found the record done (LeaseLost, 409),
    a release logged its attempt twice.
    """
    store = RedisStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    call = store._call

    def dump() -> dict[bytes, Any]:
        return {key: client.dump(key) for key in client.scan_iter()}

    def twice(script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        first = call(script, keys, args)
        written = dump()
        assert call(script, keys, args) == first
        assert dump() == written
        return first

    monkeypatch.setattr(store, "_call", twice)
    done, failed = LogEntry("evt_1", "a.b", "received", 200), LogEntry("evt_2", "a.b", "failed", 500)
    claim = store.claim("ns", "evt_1", now=T0, lease=30, ttl=60, keep=KEEP)
    assert claim.state == "new"
    store.mark("ns", "evt_1", claim.token, "h", Reply(200, b"ok"), now=T0)
    store.renew("ns", "evt_1", claim.token, now=T0 + 10, lease=30)
    store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60, entry=done)
    assert store.claim("ns", "evt_1", now=T0, lease=30, ttl=60).state == "done"
    other = store.claim("ns", "evt_2", now=T0, lease=30, ttl=60, keep=KEEP)
    store.mark("ns", "evt_2", other.token, "h", Reply(200, b"ok"), now=T0)
    store.release("ns", "evt_2", other.token, now=T0, entry=failed)
    again = store.claim("ns", "evt_2", now=T0 + 1, lease=30, ttl=60)
    assert (again.state, dict(again.handlers)) == ("new", {"h": Reply(200, b"ok")})
    monkeypatch.undo()
    assert store.deliveries("ns") == [failed, done]
    assert [len(s.attempts) for s in store.query("ns", now=T0 + 1)] == [1, 1]
    with pytest.raises(LeaseLost):  # a second call is no re-send: the token stays spent
        store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)


def test_a_reopening_sent_again_answers_as_it_did(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay's reopening of a completed delivery whose answer was lost found its own
    claim: the operator was told "in flight", and the delivery stayed held for a lease."""
    store = RedisStore(redis_url)
    claim = store.claim("ns", "evt_3", now=T0, lease=30, ttl=60, keep=KEEP)
    store.mark("ns", "evt_3", claim.token, "h1", Reply(200, b"one"), now=T0)
    store.complete("ns", "evt_3", claim.token, outcome="received", reply=Reply(200, b"ok"), now=T0, ttl=60)
    call, answers = store._call, []

    def twice(script: Callable[..., Any], keys: list[str], args: list[Any]) -> Any:
        answers.append(call(script, keys, args))
        answers.append(call(script, keys, args))
        return answers[-1]

    monkeypatch.setattr(store, "_call", twice)
    reopened = store.reopen("ns", "evt_3", now=T0 + 5, lease=30, rerun=["h1"])
    assert answers[0] == answers[1]
    assert (reopened.state, reopened.outcome, reopened.reply) == ("new", "received", Reply(200, b"ok"))


def test_a_claim_sent_again_late_does_not_take_over_one_made_meanwhile(redis_url: str) -> None:
    """The re-send carries the first send's ``now``, seconds old when another worker has
    claimed: that claim's lease then looks past ``now + lease + skew``, as a clock running
    ahead writes, and was taken over for a stale one, so both ran the handler."""
    store = RedisStore(redis_url)
    assert store.claim("ns", "evt_4", now=T0 + 2.5, lease=30, ttl=60).state == "new"  # worker B
    late = store.claim("ns", "evt_4", now=T0, lease=30, ttl=60)  # worker A's claim, re-sent
    assert late.state == "inflight"


@pytest.mark.parametrize("made", ["kwargs", "defaults"])
def test_a_ready_clients_retries_bound_how_late_a_claim_is_sent_again(redis_url: str, made: str) -> None:
    """A client passed in resends as its connections are configured, which its pool's kwargs
    may not say (redis-py's defaults live in the connection): 3 retries of 2 + 1 + 0.5 s here,
    so worker A's claim may reach the server 10.5 s after its ``now``. Counted as one retry of
    the kwargs' timeouts (or none), worker B's claim meanwhile looked stale and was taken over:
    both ran the handler."""
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    retry = Retry(ConstantBackoff(0.5), 3)
    options = {"socket_timeout": 2, "socket_connect_timeout": 1, "retry": retry}
    if made == "kwargs":
        client = redis.Redis.from_url(redis_url, **options)
    else:  # a connection class whose defaults the pool's kwargs do not show
        class Configured(redis.Connection):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**{**kwargs, **options})

        client = redis.Redis.from_url(redis_url)
        client.connection_pool.connection_class = Configured
    store = RedisStore(client)
    assert store.skew == pytest.approx(1 + 3 * (2 + 1 + 0.5) + 0.1)
    assert store.claim("ns", "evt_5", now=T0 + 10, lease=30, ttl=60).state == "new"  # worker B
    assert store.claim("ns", "evt_5", now=T0, lease=30, ttl=60).state == "inflight"  # A's, re-sent


def test_a_command_that_reaches_the_server_late_takes_no_live_lease_for_a_stale_one(redis_url: str) -> None:
    """Worker A's claim, sent 30 s ago, reaches the server only now (a network partition
    outlasted A's retries; TCP delivered it when it healed): its ``now`` is 30 s old, and the
    lease worker B took meanwhile ended past A's horizon, as one written by a clock running
    ahead does. It was taken over: B's completion was refused and the sender's next retry ran
    the handler again. The server's clock says the command is late; a lease hours ahead of
    both clocks is still stale."""
    store = RedisStore(redis_url)
    now = time.time()  # the server's clock, near enough
    b = store.claim("ns", "evt_6", now=now, lease=30, ttl=60, keep=KEEP._replace(received_at=now))
    assert b.state == "new"
    assert store.claim("ns", "evt_6", now=now - 30, lease=30, ttl=60).state == "inflight"  # A's, late
    with pytest.raises(InFlight):
        store.forget("ns", "evt_6", now=now - 30, lease=30)
    assert store.reopen("ns", "evt_6", now=now - 30, lease=30).state == "inflight"
    store.complete("ns", "evt_6", b.token, outcome="received", reply=None, now=now, ttl=60)
    store.claim("ns", "evt_7", now=now + 7200, lease=30, ttl=60)  # a clock two hours ahead
    assert store.claim("ns", "evt_7", now=now, lease=30, ttl=60).state == "new"


def test_an_answer_lost_to_a_timeout_is_retried_without_a_409(redis_url: str) -> None:
    """The store's own retry config, through a connection that drops one EVALSHA answer."""
    lost: list[str] = []

    class LosesAnAnswer(redis.Connection):
        armed = False

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self.sent = args[0]
            super().send_command(*args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            answer = super().read_response(*args, **kwargs)
            if LosesAnAnswer.armed and self.sent == "EVALSHA":  # the script ran; its answer is lost
                LosesAnAnswer.armed = False
                lost.append(self.sent)
                raise redis.TimeoutError("Timeout reading from socket")
            return answer

    store = RedisStore(redis_url)
    store.client.connection_pool.connection_class = LosesAnAnswer
    entry = LogEntry("evt_1", "a.b", "failed", 500)
    try:
        for step in range(4):
            LosesAnAnswer.armed = True
            claim = store.claim("ns", "evt_1", now=T0 + step, lease=30, ttl=60)
            assert claim.state == "new"
            LosesAnAnswer.armed = True
            if step < 3:
                store.release("ns", "evt_1", claim.token, now=T0 + step, entry=entry)
            else:
                store.complete("ns", "evt_1", claim.token, outcome="received", reply=None, now=T0, ttl=60)
        assert len(lost) == 8
        assert store.deliveries("ns") == [entry] * 3
        assert store.claim("ns", "evt_1", now=T0 + 5, lease=30, ttl=60).state == "done"
    finally:
        store.close()
