"""Purging 1 million expired deliveries while 4 workers receive (``python -m bench inbox-purge``).

Goal: no writer waits more than 50 ms (the longest single claim or
completion), and throughput stays at least 0.8x the same run without
the purge.

One SQLite file is filled with 1 million kept deliveries (512-byte
bodies) past their retention, by SQL straight into the tables the store
created. Then 4 worker processes claim (keeping a 2 KiB copy) and
complete new ids, as in ``bench.sqlite_contention``, for a fixed count
or until a wall-clock cap, in three ways:

- reference: the same file with the workers' clock 60 days back, when
  nothing has expired yet: the same file and size, nothing to purge;
- automatic: the store's own sweep, which every 64th log line's completion
  runs after its commit (up to 128 rows, in transactions of 64), so the
  completion that runs it answers later: its wall time counts as a stall;
- explicit: the automatic sweep plus a fifth process running
  ``store.purge()`` in a loop, as ``flask hooks purge --older-than 7d`` does.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from flask_hooks.stores.sqlite import SqliteStore

from .common import Fact, Result, Row, percentile, table
from .sqlite_contention import PROCESSES, RETENTION, deliver_new

EXPIRED = 1_000_000
OLD_BODY = 512
PER_PROCESS = 1500
#: Seconds a run may last (workers stop early), and the reference's clock offset.
CAP = 40.0
SHIFT = 60 * 86400.0
ROUNDS = 2
DAY = 86400.0

_SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
#: Scattered ids, as senders' are (the primary key is (id, ns)).
_ID = "printf('%08x-%d', (i * 2654435761) % 4294967296, i)"
_ATTEMPT = json.dumps(
    {
        "v": 1,
        "attempts": [
            {"v": 1, "id": "%s", "type": "order.created", "status": "received", "code": 200, "reason": "",
             "secret_index": 0, "received_us": 0, "duration_us": 1000, "handlers": ["on_order"]}
        ],
    }
)  # fmt: skip


def fill(path: str, count: int, now: float) -> None:
    """``count`` kept deliveries received 30 to 10 days before ``now``, all past their retention."""
    store = SqliteStore(path)
    store.deliveries("hooks")  # connects: the store creates its schema
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # A throwaway file: no journal, no sync while filling; WAL again for the store.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        headers = json.dumps({"v": 1, "headers": [["Content-Type", "application/json"]]})
        step = 20 * DAY / count
        db.execute("BEGIN")
        db.execute(
            f"{_SERIES} INSERT INTO hooks_kept (seq, headers, body)"
            " SELECT i, :headers, zeroblob(:size) FROM n",
            {"count": count, "headers": headers, "size": OLD_BODY},
        )
        db.execute(
            f"{_SERIES} INSERT INTO hooks_deliveries (ns, id, state, expires_at, retained_until, status,"
            " outcome, kept, type, received_at, secret_index, attempts)"
            f" SELECT 'hooks', {_ID}, 'done', :start + i * :step + :ttl, :start + i * :step + :retention,"
            " 'received', 'received', i, 'order.created', :start + i * :step, 0,"
            f" printf(:attempt, {_ID}) FROM n",
            {
                "count": count,
                "start": now - 30 * DAY,
                "step": step,
                "ttl": DAY,
                "retention": RETENTION,
                "attempt": _ATTEMPT,
            },
        )
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL").fetchall()
    finally:
        db.close()
    # Written back now, not by the first commit that waits for the disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _worker(path: str, prefix: str, shift: float, barrier: Barrier, out: Any) -> None:
    store = SqliteStore(path)
    store.deliveries("hooks")
    barrier.wait()
    started = time.perf_counter()
    claims, completions = deliver_new(
        store, prefix, PER_PROCESS, keep=True, now=lambda: time.time() - shift, stop=started + CAP
    )
    store.close()
    out.put(("worker", claims, completions, time.perf_counter() - started))


def _purger(path: str, barrier: Barrier, stop: Event, out: Any) -> None:
    """``flask hooks purge --older-than 7d`` in a loop (``Inbox.purge``), until told to stop."""
    store = SqliteStore(path)
    store.deliveries("hooks")
    barrier.wait()
    started, removed = time.perf_counter(), 0
    while not stop.is_set():
        now = time.time()
        done = store.purge("hooks", now=now, received_before=now - RETENTION)
        removed += done
        if not done:
            break
    store.close()
    out.put(("purger", removed, time.perf_counter() - started))


@dataclasses.dataclass
class _Run:
    """One run: every worker's claim and completion times, the purge loop's count."""

    waits: list[float] = dataclasses.field(default_factory=list)
    deliveries: int = 0
    elapsed: float = 0.0
    purged: int = 0
    purging: float = 0.0


def _run(path: str, tag: str, *, shift: float, explicit: bool) -> _Run:
    ctx = multiprocessing.get_context("fork")
    parties = PROCESSES + explicit
    barrier, stop, out = ctx.Barrier(parties, timeout=60), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(path, f"{tag}-{n}", shift, barrier, out)) for n in range(PROCESSES)
    ]
    if explicit:
        procs.append(ctx.Process(target=_purger, args=(path, barrier, stop, out)))
    for p in procs:
        p.start()
    run, workers = _Run(), 0
    try:
        for _ in range(parties):
            kind, *data = out.get(timeout=CAP + 60)
            if kind == "worker":
                claims, completions, elapsed = data
                run.waits += claims + completions
                run.deliveries += len(claims)
                run.elapsed = max(run.elapsed, elapsed)
                workers += 1
                if workers == PROCESSES:
                    stop.set()  # the workers are done: so is the purge
            else:
                run.purged, run.purging = data
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    if any(p.exitcode for p in procs):
        raise RuntimeError("an inbox-purge process failed")
    return run


def _remaining(path: str, now: float) -> int:
    db = sqlite3.connect(path)
    try:
        sql = "SELECT count(*) FROM hooks_deliveries WHERE retained_until <= ?"
        return int(db.execute(sql, (now,)).fetchone()[0])
    finally:
        db.close()


def purge_under_load() -> list[Row]:
    """The three ways alternated over ``ROUNDS`` rounds on one file: the median round, the worst stall."""
    runs: dict[str, list[_Run]] = {"reference": [], "automatic": [], "explicit": []}
    ways = [("reference", SHIFT, False), ("automatic", 0.0, False), ("explicit", 0.0, True)]
    with tempfile.TemporaryDirectory(prefix="bench-inbox-purge-") as tmp:
        path = os.path.join(tmp, "hooks.sqlite3")
        started = time.perf_counter()
        fill(path, EXPIRED, time.time())
        filled = time.perf_counter() - started
        print(f"inbox-purge: {EXPIRED} expired deliveries filled in {filled:.0f} s", file=sys.stderr)
        for r in range(ROUNDS):
            for name, shift, explicit in ways[r % 3 :] + ways[: r % 3]:
                runs[name].append(_run(path, f"{name}-{r}", shift=shift, explicit=explicit))
        left = _remaining(path, time.time())

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    rate = {name: median([run.deliveries / run.elapsed for run in done]) for name, done in runs.items()}
    stall = {name: max(max(run.waits) for run in done) * 1000 for name, done in runs.items()}
    p99 = {name: median([percentile(run.waits, 99) for run in done]) * 1000 for name, done in runs.items()}
    purging = sum(run.purging for run in runs["explicit"])
    purged = sum(run.purged for run in runs["explicit"]) / purging if purging else 0.0
    label = f"{PROCESSES} workers, {EXPIRED // 1_000_000}M expired rows"
    rows: list[Row] = []
    for name, how in (("automatic", "the store's sweep"), ("explicit", "sweep + a purge loop")):
        where = f"{label}, purged by {how}"
        rows += [
            Fact("inbox-purge", f"max stall (claim or completion), {where}", stall[name], "ms", goal=50.0,
                 baseline=stall["reference"]),
            Fact("inbox-purge", f"p99 (claims and completions), {where}", p99[name], "ms",
                 baseline=p99["reference"]),
            Result("inbox-purge", f"claim+complete throughput, {where}", rate[name], rate["reference"],
                   "req/s", goal=1 / 0.8, higher_is_better=True),
        ]  # fmt: skip
    rows[0].note = (
        f"reference column: the same file, nothing expired yet; {ROUNDS} alternating rounds of"
        f" {PROCESSES}x{PER_PROCESS} deliveries; fill {filled:.0f} s; the purge loop removed"
        f" {purged:.0f} rows/s; {left} expired rows left at the end"
    )
    rows[2].note = "goal: at least 0.8x the reference's rate (its rate over ours at most 1.25x)"
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"inbox-purge": purge_under_load}


if __name__ == "__main__":
    print(table(purge_under_load()))
