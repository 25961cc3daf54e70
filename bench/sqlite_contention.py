"""SQLite under contention: 4 processes claiming and completing at once.

flask_hooks' ``SqliteStore`` queues writers on an ``flock`` (the kernel
wakes the next one as soon as the lock is free). The baseline is the
naive receiver: the same transactions relying on SQLite's busy timeout,
whose handler sleeps up to 100 ms per try while another process writes.
Claim latency is wall time around ``claim`` (one write transaction).
The inbox rows run the same store keeping each delivery (a 2 KiB body,
as ``bench.inbox`` sends; the default configuration), against it without.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

from flask_hooks.core.inbox import Kept
from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sqlite import SqliteStore

from .apps import PlainSqlite
from .common import Fact, Result, Row, percentile

PROCESSES = 4
PER_PROCESS = 600
#: The kept copy of the inbox rows: ``bench.inbox``'s body size, a few headers.
BODY = b'{"id": "x", "type": "order.created", "pad": "' + b"x" * 2000 + b'"}'
HEADERS = (("Content-Type", "application/json"), ("X-Webhook-Signature", "f" * 64))
RETENTION = 7 * 86400


def deliver_new(
    store: SqliteStore, prefix: str, count: int, *, keep: bool, now: Callable[[], float], stop: float
) -> tuple[list[float], list[float]]:
    """Claim and complete ``count`` new ids, as a receiver does, until ``stop`` (``perf_counter``).

    The wall time of each claim and of each completion (which includes the
    sweep of expired rows that the completion of every 64th log line runs).
    """
    claims, completions = [], []
    for i in range(count):
        if time.perf_counter() > stop:
            break
        id = f"{prefix}-{i}"
        at = now()
        kept = Kept("order.created", BODY, HEADERS, at, 0, RETENTION) if keep else None
        t0 = time.perf_counter()
        claim = store.claim("hooks", id, now=at, lease=60, ttl=86400, keep=kept)
        t1 = time.perf_counter()
        entry = LogEntry(id, "order.created", "received", 200, received_at=at, handlers=("on_order",))
        done = now()
        store.complete(
            "hooks", id, claim.token, outcome="received", reply=None, now=done, ttl=86400, entry=entry
        )
        claims.append(t1 - t0)
        completions.append(time.perf_counter() - t1)
    return claims, completions


def _ours(path: str, worker: int, barrier: Barrier, out: Any, keep: bool = False) -> None:
    store = SqliteStore(path)
    store.claim("warm", f"w{worker}", now=time.time(), lease=60, ttl=60)
    barrier.wait()
    started = time.perf_counter()
    claims, _ = deliver_new(store, str(worker), PER_PROCESS, keep=keep, now=time.time, stop=started + 300)
    store.close()
    out.put((claims, time.perf_counter() - started))


def _naive(path: str, worker: int, barrier: Barrier, out: Any) -> None:
    store = PlainSqlite(path)
    store.claim(f"warm-{worker}", time.time())
    barrier.wait()
    started = time.perf_counter()
    latencies = []
    for i in range(PER_PROCESS):
        id = f"{worker}-{i}"
        t0 = time.perf_counter()
        store.claim(id, time.time())
        latencies.append(time.perf_counter() - t0)
        store.complete(id, f'{{"id": "{id}"}}')
    out.put((latencies, time.perf_counter() - started))


def _run(target: Callable[..., None], path: str, *extra: object) -> tuple[list[float], float]:
    # Both files get their schema before the race, as a deployed app's would.
    if target is _naive:
        PlainSqlite(path).conn()
    else:
        store = SqliteStore(path)
        store.deliveries("hooks")  # connects: the store creates its schema
        store.close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES, timeout=60)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(path, n, barrier, out, *extra)) for n in range(PROCESSES)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    elapsed = 0.0
    try:
        for _ in procs:
            mine, took = out.get(timeout=300)
            latencies.extend(mine)
            elapsed = max(elapsed, took)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a {target.__name__} worker failed")
    return latencies, len(latencies) / elapsed


ROUNDS = 3


def contention() -> list[Row]:
    """Alternate the three over a few rounds; report the median round (the worst stall)."""
    runs: dict[str, list[tuple[list[float], float]]] = {"ours": [], "inbox": [], "naive": []}
    order: list[tuple[str, Callable[..., None], tuple[object, ...]]] = [
        ("ours", _ours, ()),
        ("inbox", _ours, (True,)),
        ("naive", _naive, ()),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            for name, target, extra in order[r % 3 :] + order[: r % 3]:
                runs[name].append(_run(target, os.path.join(tmp, f"{name}-{r}.sqlite3"), *extra))

    def median(name: str, pct: float) -> float:
        return sorted(percentile(lat, pct) for lat, _ in runs[name])[ROUNDS // 2]

    def stall(name: str) -> float:
        return max(max(lat) for lat, _ in runs[name]) * 1000

    rate = {name: sorted(rate for _, rate in runs[name])[ROUNDS // 2] for name in runs}
    p50 = {name: median(name, 50) * 1000 for name in runs}
    p99 = {name: median(name, 99) * 1000 for name in runs}
    label = f"{PROCESSES} processes on {len(os.sched_getaffinity(0))} cores"
    kept = f"{label}, inbox on (2 KiB kept)"
    return [
        Fact("sqlite", f"claim p50, {label}", p50["ours"], "ms", baseline=p50["naive"]),
        Fact("sqlite", f"claim p99, {label}", p99["ours"], "ms", goal=5.0, baseline=p99["naive"]),
        Fact(
            "sqlite",
            f"claim max stall, {label}",
            stall("ours"),
            "ms",
            goal=50.0,
            baseline=stall("naive"),
            note="reference column: the same transactions with only SQLite's busy timeout;"
            f" median of {ROUNDS} alternating rounds, max stall over all of them",
        ),
        Result(
            "sqlite",
            f"claim+complete throughput, {label}",
            rate["ours"],
            rate["naive"],
            "req/s",
            higher_is_better=True,
        ),
        # The inbox is on by default: the same goals, the store without it as the reference.
        Fact("sqlite", f"claim p99, {kept}", p99["inbox"], "ms", goal=5.0, baseline=p99["ours"]),
        Fact(
            "sqlite",
            f"claim max stall, {kept}",
            stall("inbox"),
            "ms",
            goal=50.0,
            baseline=stall("ours"),
            note="reference column: the same store with the inbox off",
        ),
        Result(
            "sqlite",
            f"claim+complete throughput, {kept}",
            rate["inbox"],
            rate["ours"],
            "req/s",
            higher_is_better=True,
        ),
    ]


SECTIONS: dict[str, Callable[[], list[Row]]] = {"sqlite": contention}
