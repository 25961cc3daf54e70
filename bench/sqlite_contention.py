"""SQLite under contention: 4 processes claiming and completing at once.

flask_hooks' ``SqliteStore`` queues writers on an ``flock`` (the kernel
wakes the next one as soon as the lock is free). The baseline is the
naive receiver: the same transactions relying on SQLite's busy timeout,
whose handler sleeps up to 100 ms per try while another process writes.
Claim latency is wall time around ``claim`` (one write transaction).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

from flask_hooks.stores.base import LogEntry
from flask_hooks.stores.sqlite import SqliteStore

from .apps import PlainSqlite
from .common import Fact, Result, Row, percentile

PROCESSES = 4
PER_PROCESS = 600


def _ours(path: str, worker: int, barrier: Barrier, out: Any) -> None:
    store = SqliteStore(path)
    store.claim("warm", f"w{worker}", now=time.time(), lease=60, ttl=60)
    barrier.wait()
    started = time.perf_counter()
    latencies = []
    for i in range(PER_PROCESS):
        id = f"{worker}-{i}"
        t0 = time.perf_counter()
        claim = store.claim("hooks", id, now=time.time(), lease=60, ttl=86400)
        latencies.append(time.perf_counter() - t0)
        store.complete(
            "hooks",
            id,
            claim.token,
            outcome="received",
            reply=None,
            now=time.time(),
            ttl=86400,
            entry=LogEntry(id, "order.created", "received", 200),
        )
    store.close()
    out.put((latencies, time.perf_counter() - started))


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


def _run(target: Callable[..., None], path: str) -> tuple[list[float], float]:
    # Both files get their schema before the race, as a deployed app's would.
    if target is _naive:
        PlainSqlite(path).conn()
    else:
        SqliteStore(path).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES, timeout=60)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(path, n, barrier, out)) for n in range(PROCESSES)]
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
    """Alternate the two over a few rounds; report the median round (the worst stall)."""
    runs: dict[str, list[tuple[list[float], float]]] = {"ours": [], "naive": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            order = [("ours", _ours), ("naive", _naive)]
            for name, target in order if r % 2 == 0 else order[::-1]:
                runs[name].append(_run(target, os.path.join(tmp, f"{name}-{r}.sqlite3")))

    def median(name: str, pct: float) -> float:
        return sorted(percentile(lat, pct) for lat, _ in runs[name])[ROUNDS // 2]

    ours = {pct: median("ours", pct) for pct in (50, 99)}
    naive = {pct: median("naive", pct) for pct in (50, 99)}
    ours_rate = sorted(rate for _, rate in runs["ours"])[ROUNDS // 2]
    naive_rate = sorted(rate for _, rate in runs["naive"])[ROUNDS // 2]
    ours_stall = max(max(lat) for lat, _ in runs["ours"])
    naive_stall = max(max(lat) for lat, _ in runs["naive"])
    label = f"{PROCESSES} processes on {len(os.sched_getaffinity(0))} cores"
    return [
        Fact(
            "sqlite",
            f"claim p50, {label}",
            ours[50] * 1000,
            "ms",
            baseline=naive[50] * 1000,
        ),
        Fact(
            "sqlite",
            f"claim p99, {label}",
            ours[99] * 1000,
            "ms",
            goal=5.0,
            baseline=naive[99] * 1000,
        ),
        Fact(
            "sqlite",
            f"claim max stall, {label}",
            ours_stall * 1000,
            "ms",
            goal=50.0,
            baseline=naive_stall * 1000,
            note="reference column: the same transactions with only SQLite's busy timeout;"
            f" median of {ROUNDS} alternating rounds, max stall over all of them",
        ),
        Result(
            "sqlite",
            f"claim+complete throughput, {label}",
            ours_rate,
            naive_rate,
            "req/s",
            higher_is_better=True,
        ),
    ]


SECTIONS: dict[str, Callable[[], list[Row]]] = {"sqlite": contention}
