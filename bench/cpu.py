"""CPU per delivery: flask_hooks vs the hand-written view, in-process and under gunicorn."""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from .apps import hooks_app, plain_app
from .common import Fact, Result, Row, free_port, generic_request, percentile

ROOT = Path(__file__).resolve().parents[1]


def _environs(prefix: str, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body, headers = generic_request(f"{prefix}-{i}")
        out.append(
            EnvironBuilder("/webhooks", method="POST", data=body, headers=list(headers.items())).get_environ()
        )
    return out


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    if not status.startswith("200"):
        raise RuntimeError(f"unexpected {status}")
    return None


def _cpu(app: Flask, environs: list[dict[str, Any]]) -> float:
    wsgi = app.wsgi_app
    start = time.process_time()
    for environ in environs:
        for chunk in wsgi(environ, _start_response):
            del chunk
    return (time.process_time() - start) / len(environs)


def in_process(n: int = 250, rounds: int = 36) -> list[Row]:
    """Direct WSGI calls (no test client): CPU seconds per new delivery.

    Many short alternating rounds, best of each: on a shared machine a
    long round is likely to catch a neighbour's burst on one side only.
    """
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, store in [("memory", "memory://"), ("sqlite", f"sqlite:///{tmp}/{{}}.sqlite3")]:
            apps = {
                "hooks": hooks_app(store.format("hooks")),
                "plain": plain_app(store.format("plain")),
            }
            for app in apps.values():  # warm up: imports, connections, schema
                _cpu(app, _environs(f"warm-{app.name}", 50))
            best = {"hooks": float("inf"), "plain": float("inf")}
            for r in range(rounds):
                for kind, app in apps.items():
                    environs = _environs(f"{kind}-{r}", n)
                    best[kind] = min(best[kind], _cpu(app, environs))
            rows.append(
                Result(
                    "cpu",
                    f"in-process, {label} store (CPU/delivery)",
                    best["hooks"],
                    best["plain"],
                    "s",
                    1.10,
                )
            )
    return rows


def server_cpu(master: int) -> float:
    """CPU seconds run so far by a gunicorn master, its workers and all their threads.

    From ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds): ``stat``'s
    utime and stime count 10 ms ticks, too coarse for a few seconds of work.
    """
    nanoseconds = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(entry.name) != master and int(stat.rsplit(")", 1)[1].split()[1]) != master:
                continue
            for task in os.scandir(Path(entry.path, "task")):
                nanoseconds += int(Path(task.path, "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return nanoseconds / 1e9


@contextmanager
def gunicorn(
    kind: str, store: str, workers: int = 4, *, app: str = "bench.apps:create_app()", **env_extra: str
) -> Iterator[tuple[int, int]]:
    port = free_port()
    env = dict(os.environ, BENCH_KIND=kind, BENCH_STORE=store, **env_extra)
    exe = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [
            str(exe),
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(port: int, prefix: str, n: int, threads: int, extra: int = 0) -> tuple[float, list[float]]:
    """Send ``n`` new deliveries (``extra`` bytes of padding each) over keep-alive connections.

    Returns (req/s, latencies).
    """
    requests = [generic_request(f"{prefix}-{i}", extra=extra) for i in range(n)]
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(part: list[tuple[bytes, dict[str, str]]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for body, headers in part:
            t0 = time.perf_counter()
            conn.request("POST", "/webhooks", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200:
                errors.append(str(response.status))
        conn.close()
        with lock:
            latencies.extend(mine)

    parts = [requests[i::threads] for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(part,)) for part in parts]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} non-200 answers, e.g. {errors[0]}")
    return n / elapsed, latencies


def under_gunicorn(n: int = 12000, threads: int = 8, rounds: int = 40) -> list[Row]:
    """CPU per delivery of the server processes (the goal), and req/s and p99 as clients see them.

    The load generator shares the 2 cores, so throughput and latency move
    with it. The servers' own CPU per delivery moves less, but still by a
    third from burst to burst (each burst's connections spread over the
    workers differently, and a worker with more of them spends more on
    its threads taking turns): the figure is the median of many short
    alternating bursts.
    """
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, store in [("memory", "memory://"), ("sqlite", f"sqlite:///{tmp}/{{}}.sqlite3")]:
            stats: dict[str, tuple[float, float, float]] = {}
            with (
                gunicorn("hooks", store.format("hooks")) as ours,
                gunicorn("plain", store.format("plain")) as ref,
            ):
                servers = {"hooks": ours, "plain": ref}
                busy = {kind: 0.0 for kind in servers}
                cpu: dict[str, list[float]] = {kind: [] for kind in servers}
                latencies: dict[str, list[float]] = {kind: [] for kind in servers}
                for kind, (port, _pid) in servers.items():
                    load(port, f"warm-{kind}", 200, threads)
                # Alternate short bursts so both servers see the same background load.
                for r in range(rounds):
                    for kind, (port, pid) in servers.items() if r % 2 == 0 else reversed(servers.items()):
                        before = server_cpu(pid)
                        rate, lat = load(port, f"{kind}-{r}", n // rounds, threads)
                        cpu[kind].append((server_cpu(pid) - before) / (n // rounds))
                        busy[kind] += (n // rounds) / rate
                        latencies[kind].extend(lat)
                for kind in servers:
                    count = len(latencies[kind])
                    stats[kind] = (
                        statistics.median(cpu[kind]),
                        count / busy[kind],
                        percentile(latencies[kind], 99),
                    )
            where = f"{label}: 4 gthread workers, {threads} clients"
            hooks, plain = stats["hooks"], stats["plain"]
            rows.append(Result("gunicorn", f"{where}, server CPU/delivery", hooks[0], plain[0], "s", 1.10))
            rows.append(
                Result(
                    "gunicorn",
                    f"{where}, throughput",
                    hooks[1],
                    plain[1],
                    "req/s",
                    higher_is_better=True,
                )
            )
            rows.append(
                Fact(
                    "gunicorn",
                    f"{where}, p99 latency",
                    hooks[2] * 1000,
                    "ms",
                    baseline=plain[2] * 1000,
                )
            )
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"cpu": in_process, "gunicorn": under_gunicorn}
