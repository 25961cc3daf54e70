"""The embedded SQLite default shared by several processes on one real file."""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import time
import traceback
from collections.abc import Callable
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import pytest

from flask_hooks.stores import SqliteStore

IDS = [f"evt_{i}" for i in range(150)]
WORKERS = 4


def child(results: Any, target: Callable[..., object], *args: object) -> None:
    """Run in a child process: send ``target(*args)`` back, or the traceback of what it raised."""
    try:
        value = target(*args)
    except BaseException:
        results.put((False, traceback.format_exc()))
        raise
    results.put((True, value))


def collect(procs: list[Any], results: Any, timeout: float) -> list[Any]:
    """One value per child, in arrival order.

    A child that raised fails the test with its traceback, one that died
    without a word with its exit code: both at once, not at the timeout.
    """
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    grace = 0.0
    while len(out) < len(procs):
        try:
            ok, value = results.get(timeout=0.1)
        except queue.Empty:
            now = time.monotonic()
            if now > deadline:
                pytest.fail(f"{len(procs) - len(out)} child processes sent nothing in {timeout} s")
            if sum(p.exitcode is not None for p in procs) > len(out):
                grace = grace or now + 2  # its last message may still be in the pipe
                if now > grace:
                    codes = [p.exitcode for p in procs]
                    pytest.fail(f"a child process exited without a result (exit codes {codes})")
            continue
        if not ok:
            pytest.fail(f"a child process failed:\n{value}", pytrace=False)
        out.append(value)
    return out


def run(ctx: BaseContext, calls: list[tuple[Callable[..., object], tuple[object, ...]]]) -> list[Any]:
    """Run each ``(target, args)`` in its own process and collect what they return."""
    results = ctx.Queue()
    procs = [ctx.Process(target=child, args=(results, target, *args)) for target, args in calls]  # type: ignore[attr-defined]
    for proc in procs:
        proc.start()
    try:
        return collect(procs, results, timeout=120)
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def worker(path: str, seed: int) -> list[str]:
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
    store.close()
    return won


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_each_delivery_is_claimed_once_across_processes(tmp_path: Path, start: str) -> None:
    path = str(tmp_path / "hooks.sqlite3")
    SqliteStore(path).deliveries("hooks")  # the schema exists before the race, as after init_app
    results = run(multiprocessing.get_context(start), [(worker, (path, seed)) for seed in range(WORKERS)])
    claimed = [id for won in results for id in won]
    assert sorted(claimed) == sorted(IDS)
    store = SqliteStore(path)
    assert all(store.claim("hooks", id, now=1001.0, lease=60, ttl=3600).state == "done" for id in IDS)


def test_a_store_opened_before_fork_reconnects_in_the_child(tmp_path: Path) -> None:
    path = str(tmp_path / "hooks.sqlite3")
    store = SqliteStore(path)
    first = store.claim("hooks", "parent", now=0.0, lease=60, ttl=3600)
    assert first.state == "new"

    def in_child() -> tuple[str, str]:
        claim = store.claim("hooks", "parent", now=1.0, lease=60, ttl=3600)
        other = store.claim("hooks", "child", now=1.0, lease=60, ttl=3600)
        return claim.state, other.state

    assert run(multiprocessing.get_context("fork"), [(in_child, ())]) == [("inflight", "new")]
    assert store.claim("hooks", "child", now=2.0, lease=60, ttl=3600).state == "inflight"


def first_use(path: str, barrier: Any) -> str:
    barrier.wait(30)
    return SqliteStore(path).claim("hooks", str(os.getpid()), now=0.0, lease=60, ttl=60).state


@pytest.mark.slow
def test_workers_racing_to_create_a_fresh_store_all_succeed(tmp_path: Path) -> None:
    """Gunicorn workers open the file at once; none may get a 503 for it."""
    ctx = multiprocessing.get_context("fork")
    for round in range(10):
        path = str(tmp_path / f"fresh-{round}.sqlite3")
        barrier = ctx.Barrier(6)
        assert run(ctx, [(first_use, (path, barrier))] * 6) == ["new"] * 6


def test_claim_tokens_differ_in_a_forked_child() -> None:
    """Forked workers share the parent's memory; their fencing tokens must not collide."""
    from flask_hooks.stores.base import new_token, process_generation

    before = process_generation()
    parent = [new_token() for _ in range(3)]
    [(tokens, generation)] = run(
        multiprocessing.get_context("fork"),
        [(lambda: ([new_token() for _ in range(3)], process_generation()), ())],
    )
    assert generation != before
    assert not set(tokens) & {*parent, *(new_token() for _ in range(3))}
    assert len(set(parent)) == 3


def failing() -> None:
    assert 1 + 1 == 3, "the child's own assertion"


def crashing() -> None:
    os._exit(3)


@pytest.mark.parametrize(
    ("target", "message"),
    [(failing, "the child.s own assertion"), (crashing, r"exited without a result \(exit codes \[3\]\)")],
)
def test_a_failing_child_fails_the_test_at_once(target: Callable[[], None], message: str) -> None:
    # The child's own message, not the collection's timeout: its failure was reported at once.
    with pytest.raises(pytest.fail.Exception, match=message):
        run(multiprocessing.get_context("fork"), [(target, ())])
