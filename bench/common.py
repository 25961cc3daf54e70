"""Timing helpers, the result table and the machine description."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

SECRET = "bench-secret"


@dataclasses.dataclass
class Result:
    """One row: ours vs a reference in the same unit; ``goal`` is the ratio to stay under."""

    section: str
    name: str
    ours: float
    reference: float
    unit: str
    goal: float | None = None
    note: str = ""
    #: For rates (req/s) the cost ratio is reference / ours.
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        """Our cost relative to the reference: above 1 means slower."""
        if self.higher_is_better:
            return self.reference / self.ours if self.ours else float("nan")
        return self.ours / self.reference if self.reference else float("nan")

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "ok" if self.ratio <= self.goal else "MISSED"


@dataclasses.dataclass
class Fact:
    """A measured value with an absolute goal (latency bounds, copies)."""

    section: str
    name: str
    value: float
    unit: str
    goal: float | None = None
    baseline: float | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "ok" if self.value <= self.goal else "MISSED"


Row = Result | Fact


def cpu_per_call(func: Callable[[], object], n: int) -> float:
    """CPU seconds (user + system) per call over ``n`` calls."""
    start = time.process_time()
    for _ in range(n):
        func()
    return (time.process_time() - start) / n


def paired(
    ours: Callable[[], object], reference: Callable[[], object], n: int, rounds: int = 25
) -> tuple[float, float]:
    """Best CPU seconds per call of each, measured in alternating short rounds.

    Interleaving keeps frequency changes and neighbours' load from landing on
    one side only, which on a shared 2-core machine moves µs-scale ratios by 50 %.
    """
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, func in enumerate((ours, reference)):
            best[side] = min(best[side], cpu_per_call(func, n))
    return best[0], best[1]


def best_of(rounds: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(rounds))


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def generic_request(id: str, extra: int = 0) -> tuple[bytes, dict[str, str]]:
    """A signed generic-provider delivery, as the sender would build it."""
    payload = {"id": id, "type": "order.created", "data": {"n": id, "pad": "x" * extra}}
    body = json.dumps(payload).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Webhook-Signature": sig}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Python {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}; "
        "load average at the end %.2f %.2f %.2f (other jobs share this machine)" % os.getloadavg()
    )


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} µs"
        return f"{value * 1e3:.2f} ms"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "instr":
        return f"{value / 1000:.0f}k instr"
    if unit == "req/s":
        return f"{value:.0f} req/s"
    return f"{value:.2f} {unit}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.4f}x"


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable on a terminal too)."""
    lines = [
        "| section | measurement | flask_hooks | reference | ratio | goal | |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if isinstance(row, Result):
            goal = f"<= {row.goal:.2f}x" if row.goal else ""
            lines.append(
                f"| {row.section} | {row.name} | {fmt(row.ours, row.unit)} | "
                f"{fmt(row.reference, row.unit)} | {_ratio(row.ratio)} | {goal} | {row.verdict} |"
            )
        else:
            goal = f"<= {fmt(row.goal, row.unit)}" if row.goal is not None else ""
            base = fmt(row.baseline, row.unit) if row.baseline is not None else ""
            ratio = _ratio(row.value / row.baseline) if row.baseline else ""
            lines.append(
                f"| {row.section} | {row.name} | {fmt(row.value, row.unit)} | {base} | {ratio} | "
                f"{goal} | {row.verdict} |"
            )
    notes = [f"- {row.section} / {row.name}: {row.note}" for row in rows if row.note]
    return "\n".join([*lines, "", *notes] if notes else lines)


@contextmanager
def redis_server() -> Iterator[str]:
    """A private redis-server on a loopback port, without persistence; its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("the benchmark needs redis-server on PATH (make system-deps)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)
