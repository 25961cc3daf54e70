"""What keeping every delivery costs (``python -m bench inbox inbox-gunicorn``).

The same receiver with the inbox on (the default retention) and off
(``retention=0``), in one run: CPU per new delivery of 2 KiB, in-process
and under gunicorn, on SQLite and Redis (goal: at most 1.10x), and the
memory a 1 MiB body costs to store, counted in copies of the body
(tracemalloc peak, on minus off).

    python -m bench.inbox
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

from flask_hooks import Event, Hooks

from .common import SECRET, Fact, Result, Row, generic_request, redis_server, table
from .cpu import _cpu, gunicorn, load, server_cpu

BODY = 2048
MIB = 1024 * 1024
GOAL = 1.10


def inbox_app(store: str, retention: float | None) -> Flask:
    """A receiver with one trivial handler; ``retention=0``: no inbox."""
    app = Flask("bench_inbox")
    hooks = Hooks(app, secret=SECRET, store=store, retention=retention)

    @hooks.on("order")
    def on_order(event: Event) -> None:
        return None

    return app


def create_app() -> Flask:
    """For gunicorn: ``BENCH_STORE`` and ``BENCH_RETENTION`` (empty: the default)."""
    retention = os.environ.get("BENCH_RETENTION") or None
    return inbox_app(os.environ["BENCH_STORE"], None if retention is None else float(retention))


def _environs(prefix: str, n: int, extra: int = BODY) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        body, headers = generic_request(f"{prefix}-{i}", extra=extra)
        out.append(
            EnvironBuilder("/webhooks", method="POST", data=body, headers=list(headers.items())).get_environ()
        )
    return out


@contextmanager
def _stores() -> Iterator[list[tuple[str, str]]]:
    """(label, URL template with ``{}`` for the side) for SQLite and Redis."""
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-inbox-"))
        stores = [("sqlite", f"sqlite:///{tmp}/{{}}.sqlite3")]
        try:
            redis_url = stack.enter_context(redis_server())
        except SystemExit as exc:
            print(f"inbox: Redis skipped ({exc})", file=sys.stderr)
        else:
            # One database per side, so each side's index and keys are its own.
            stores.append(("redis", redis_url[:-1] + "{}"))
        yield stores


def _side_url(template: str, side: str) -> str:
    if template.startswith("redis"):
        return template.format({"on": 1, "off": 2}[side])
    return template.format(side)


def in_process(n: int = 200, rounds: int = 30) -> list[Row]:
    """CPU seconds per new 2 KiB delivery, inbox on vs off, alternating short rounds."""
    rows: list[Row] = []
    with _stores() as stores:
        for label, template in stores:
            apps = {
                "on": inbox_app(_side_url(template, "on"), None),
                "off": inbox_app(_side_url(template, "off"), 0),
            }
            for side, app in apps.items():
                _cpu(app, _environs(f"warm-{side}", 50))
            best = {side: float("inf") for side in apps}
            for r in range(rounds):
                for side, app in apps.items() if r % 2 == 0 else reversed(apps.items()):
                    best[side] = min(best[side], _cpu(app, _environs(f"{side}-{r}", n)))
            where = f"in-process, {label} store, {BODY // 1024} KiB body"
            rows.append(
                Result("inbox", f"{where}: CPU/delivery, inbox on vs off", best["on"], best["off"], "s", GOAL)
            )
        rows.extend(_copies())
    return rows


def _peak(app: Flask, environ: dict[str, Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for chunk in app.wsgi_app(environ, lambda *a: None):
            del chunk
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _copies() -> list[Row]:
    """A 1 MiB body kept: the extra peak allocation, in copies of the body, per store."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-inbox-copies-") as tmp:
        for label, url in (("memory", "memory://"), ("sqlite", f"sqlite:///{tmp}/{{}}.sqlite3")):
            peaks = {}
            for side, retention in (("on", None), ("off", 0.0)):
                app = inbox_app(url.format(side), retention)
                app.config["HOOKS_MAX_BODY"] = 2 * MIB
                _peak(app, _environs(f"warm-{side}", 1, extra=MIB)[0])
                peaks[side] = min(_peak(app, _environs(f"big-{side}-{r}", 1, extra=MIB)[0]) for r in range(5))
            extra = (peaks["on"] - peaks["off"]) / MIB
            rows.append(
                Fact(
                    "inbox",
                    f"1 MiB body kept, {label} store: extra peak allocation (tracemalloc), in body copies",
                    extra,
                    "copies",
                    goal=0.05,
                    note="the body is stored by reference: no copy beyond the driver's own",
                )
            )
    return rows


def under_gunicorn(n: int = 8000, threads: int = 8, rounds: int = 20) -> list[Row]:
    """Server CPU per delivery, inbox on vs off, medians of alternating bursts."""
    rows: list[Row] = []
    with _stores() as stores:
        for label, template in stores:
            with (
                gunicorn("on", _side_url(template, "on"), app="bench.inbox:create_app()") as on,
                gunicorn(
                    "off", _side_url(template, "off"), app="bench.inbox:create_app()", BENCH_RETENTION="0"
                ) as off,
            ):
                servers = {"on": on, "off": off}
                cpu: dict[str, list[float]] = {side: [] for side in servers}
                for side, (port, _pid) in servers.items():
                    load(port, f"warm-{side}", 200, threads, BODY)
                for r in range(rounds):
                    for side, (port, pid) in servers.items() if r % 2 == 0 else reversed(servers.items()):
                        before = server_cpu(pid)
                        load(port, f"{side}-{r}", n // rounds, threads, BODY)
                        cpu[side].append((server_cpu(pid) - before) / (n // rounds))
            where = f"{label}: 4 gthread workers, {threads} clients, {BODY // 1024} KiB body"
            on_cpu, off_cpu = statistics.median(cpu["on"]), statistics.median(cpu["off"])
            rows.append(
                Result("inbox", f"{where}: server CPU/delivery, inbox on vs off", on_cpu, off_cpu, "s", GOAL)
            )
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"inbox": in_process, "inbox-gunicorn": under_gunicorn}


if __name__ == "__main__":
    print(table([*in_process(), *under_gunicorn()]))
