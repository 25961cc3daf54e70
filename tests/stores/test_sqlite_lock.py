"""Every wait for the SQLite store's writers' lock ends within the store's timeout, in a 503."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from flask_hooks.core.errors import StoreUnavailable
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
NS = "hooks"
T = TypeVar("T")


def bounded(call: Callable[[], T], seconds: float = 10.0) -> tuple[T | BaseException, float]:
    """``call()``'s result or exception, and how long it took; fails the test if it hangs."""
    out: list[T | BaseException] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting after {seconds} s")
    return out[0], time.monotonic() - started


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(str(tmp_path / "hooks.sqlite3"), timeout=0.3)
    store.claim(NS, "warm-up", now=T0, lease=30, ttl=60)  # connected, sidecar files created
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def held(store: SqliteStore) -> Iterator[Callable[[str], None]]:
    """``held(".lock")``: another open file (as another process has) holds that sidecar's flock."""
    fds: list[int] = []

    def hold(suffix: str) -> None:
        fd = os.open(store.path + suffix, os.O_RDWR)
        fds.append(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    try:
        yield hold
    finally:
        for fd in fds:
            os.close(fd)  # releases the flock, so a call still waiting can end


def claim(store: SqliteStore, id: str) -> Callable[[], str]:
    return lambda: store.claim(NS, id, now=T0, lease=30, ttl=60).state


@pytest.mark.parametrize("suffix", [".lock", ".gate"])
def test_a_held_flock_is_unavailable_after_the_timeout(
    store: SqliteStore, held: Callable[[str], None], suffix: str
) -> None:
    """A worker stopped (SIGSTOP, a frozen cgroup) with the lock or the gate stops nobody for long."""
    held(suffix)
    outcome, took = bounded(claim(store, "evt_1"))
    assert isinstance(outcome, StoreUnavailable)
    assert 0.25 < took < 3


def test_the_store_works_again_once_the_flock_is_released(store: SqliteStore) -> None:
    fd = os.open(store.path + ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert isinstance(bounded(claim(store, "evt_1"))[0], StoreUnavailable)
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert bounded(claim(store, "evt_1"))[0] == "new"
    finally:
        os.close(fd)


def test_a_thread_holding_the_lock_bounds_the_others(store: SqliteStore) -> None:
    store._writers.acquire()  # as a thread stuck mid-transaction would
    try:
        outcome, took = bounded(claim(store, "evt_1"))
    finally:
        store._writers.release()
    assert isinstance(outcome, StoreUnavailable)
    assert 0.25 < took < 3
    assert bounded(claim(store, "evt_1"))[0] == "new"
