"""Instructions per delivery under callgrind: the noise-free view of the CPU ratio.

Timing on a shared 2-core machine moves a 10 % ratio by 10 % between runs.
``valgrind --tool=callgrind`` counts instructions, which repeat (within
about 1 %: claim tokens and temporary paths differ) whatever the
neighbours do. Each app serves ``N``
and ``N + EXTRA`` deliveries in two runs; the difference divided by
``EXTRA`` is the cost of one delivery, start-up and warm-up cancelled out.
Building the WSGI environs is measured the same way and subtracted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .common import Result, Row

ROOT = Path(__file__).resolve().parents[1]
N, EXTRA = 100, 400

_RUN = """
import sys, tempfile
sys.path.insert(0, {root!r})
from bench.apps import hooks_app, plain_app
from bench.cpu import _environs, _start_response
kind, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if store.startswith("sqlite"):
    store = store.format(tempfile.mkdtemp())
environs = _environs(kind, n)
if kind != "none":
    app = (hooks_app if kind == "hooks" else plain_app)(store)
    for environ in environs:
        for chunk in app.wsgi_app(environ, _start_response):
            del chunk
"""


def _instructions(kind: str, store: str, n: int) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(_RUN.format(root=str(ROOT)))
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            script.name,
            kind,
            store,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    Path(script.name).unlink()
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError("callgrind printed no total:\n" + out.stderr[-2000:])
    return int(match.group(1))


def per_delivery(kind: str, store: str) -> float:
    return (_instructions(kind, store, N + EXTRA) - _instructions(kind, store, N)) / EXTRA


def instructions() -> list[Row]:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed; `make bench` installs it", file=sys.stderr)
        return []
    rows: list[Row] = []
    for label, store in [("memory", "memory://"), ("sqlite", "sqlite:///{}/bench.sqlite3")]:
        environ = per_delivery("none", store)
        hooks = per_delivery("hooks", store) - environ
        plain = per_delivery("plain", store) - environ
        rows.append(
            Result(
                "instructions",
                f"in-process, {label} store (instructions/delivery, callgrind)",
                hooks,
                plain,
                "instr",
                1.10,
                note="repeatable within about 1 % whatever else runs; excludes system calls and fsync",
            )
        )
    return rows


SECTIONS: dict[str, Callable[[], list[Row]]] = {"instructions": instructions}
