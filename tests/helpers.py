"""Small test doubles that are not fixtures."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time

import pytest

from flask_hooks.core.store import DedupeStore, LogEntry
from pytest_hooks.clock import FakeClock


class ManualClock(FakeClock):
    """The plugin's :class:`FakeClock`, started at a fixed instant so tests can name times."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)


class Crash(BaseException):
    """Stands in for a worker dying mid-handler: nothing below it runs."""


_handed_out: set[int] = set()
#: Below Linux's ephemeral range (32768-60999), so no outgoing connection of
#: this machine takes a port between our check and the server's bind.
_PORTS = range(20000, 32000)


def free_port() -> int:
    """A loopback port nobody listens on, never handed out twice in one process.

    Picking port 0 and closing it races: the kernel hands the same port to
    the next outgoing connection. Servers that still lose a race fail to
    start, and their fixtures try another port.
    """
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rng.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    pytest.fail("no free loopback port found")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    """Return once ``proc`` listens on ``port``; fail the test (and stop it) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited early (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    stop_process(proc)
    pytest.fail(f"{what} did not start listening on port {port}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def complete_each_then_log_its_duplicate(store: DedupeStore, ns: str, start: float, count: int) -> None:
    """``count`` deliveries, 100 s apart, each completed (expiring 60 s later) and then its
    duplicate logged: the completions take every other line number of the log."""
    for n in range(count):
        id, now = f"evt_{n}", start + 100 * n
        claim = store.claim(ns, id, now=now, lease=30, ttl=60)
        entry = LogEntry(id, "a.b", "received", 200, received_at=now)
        store.complete(ns, id, claim.token, outcome="received", reply=None, now=now, ttl=60, entry=entry)
        store.log(ns, entry._replace(status="duplicate"))
