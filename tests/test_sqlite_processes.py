"""The embedded SQLite default shared by several processes on one real file."""

from __future__ import annotations

import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import pytest

from flask_hooks.stores import SqliteStore

IDS = [f"evt_{i}" for i in range(150)]
WORKERS = 4


def worker(path: str, seed: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteStore(path)
    ids = IDS * 2
    random.Random(seed).shuffle(ids)
    won: list[str] = []
    for id in ids:
        claim = store.claim("hooks", id, now=1000.0, lease=60, ttl=3600)
        if claim.state == "new":
            won.append(id)
            store.complete("hooks", id, claim.token, outcome="received", reply=None, now=1000.0, ttl=3600)
        else:
            assert claim.state in {"done", "inflight"}
    queue.put(won)
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_each_delivery_is_claimed_once_across_processes(tmp_path: Path, start: str) -> None:
    path = str(tmp_path / "hooks.sqlite3")
    SqliteStore(path).deliveries("hooks")  # the schema exists before the race, as after init_app
    ctx = multiprocessing.get_context(start)
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(path, seed, queue)) for seed in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
    claimed = [id for won in results for id in won]
    assert sorted(claimed) == sorted(IDS)
    store = SqliteStore(path)
    assert all(store.claim("hooks", id, now=1001.0, lease=60, ttl=3600).state == "done" for id in IDS)


def test_a_store_opened_before_fork_reconnects_in_the_child(tmp_path: Path) -> None:
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path)
    first = store.claim("hooks", "parent", now=0.0, lease=60, ttl=3600)
    assert first.state == "new"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        claim = store.claim("hooks", "parent", now=1.0, lease=60, ttl=3600)
        other = store.claim("hooks", "child", now=1.0, lease=60, ttl=3600)
        queue.put((claim.state, other.state))

    proc = ctx.Process(target=child)
    proc.start()
    try:
        assert queue.get(timeout=60) == ("inflight", "new")
    finally:
        proc.join(30)
    assert store.claim("hooks", "child", now=2.0, lease=60, ttl=3600).state == "inflight"


def first_use(path: str, barrier: Any, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait(30)
    try:
        state = SqliteStore(path).claim("hooks", str(os.getpid()), now=0.0, lease=60, ttl=60).state
    except Exception as exc:
        state = repr(exc)
    queue.put(state)


@pytest.mark.slow
def test_workers_racing_to_create_a_fresh_store_all_succeed(tmp_path: Path) -> None:
    """Gunicorn workers open the file at once; none may get a 503 for it."""
    ctx = multiprocessing.get_context("fork")
    for round in range(10):
        path = str(tmp_path / f"fresh-{round}.sqlite3")
        barrier, queue = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=first_use, args=(path, barrier, queue)) for _ in range(6)]
        for proc in procs:
            proc.start()
        try:
            states = [queue.get(timeout=60) for _ in procs]
        finally:
            for proc in procs:
                proc.join(30)
        assert states == ["new"] * 6


def test_claim_tokens_differ_in_a_forked_child() -> None:
    """Forked workers share the parent's memory; their fencing tokens must not collide."""
    from flask_hooks.stores.base import new_token, process_generation

    before = process_generation()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        queue.put(([new_token() for _ in range(3)], process_generation()))

    parent = [new_token() for _ in range(3)]
    proc = ctx.Process(target=child)
    proc.start()
    try:
        tokens, generation = queue.get(timeout=60)
    finally:
        proc.join(30)
    assert generation != before
    assert not set(tokens) & {*parent, *(new_token() for _ in range(3))}
    assert len(set(parent)) == 3
