"""Fixtures for deferral: a web app, its worker environment, real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks.extension import get_receiver
from tests.helpers import stop_process

from .defer_app import create_app

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def broker_db(redis_url: str, db: int) -> str:
    """The session's redis-server with another database number (store and brokers apart)."""
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture
def defer_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """What the web app and the workers share: store file, brokers, side-effect file."""
    return {
        "store": "sqlite:///hooks.sqlite3",
        "broker": broker_db(redis_url, 1),
        "rq_url": broker_db(redis_url, 2),
        "out": str(tmp_path / "side-effects.txt"),
        "instance_path": str(tmp_path / "instance"),
    }


@pytest.fixture
def web_app(defer_env: dict[str, str]) -> Flask:
    return create_app(**defer_env)


def side_effects(env: dict[str, str]) -> list[str]:
    path = Path(env["out"])
    return path.read_text().splitlines() if path.exists() else []


def worker_statuses(app: Flask, id: str) -> list[str]:
    """Worker outcomes for one delivery, oldest first, from the shared delivery log."""
    receiver = get_receiver(app, "hooks")
    entries = receiver.store.deliveries(receiver.ns, limit=1000)
    worker = ("handled", "error", "duplicate")
    return [e.status for e in reversed(entries) if e.id == id and e.status in worker]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll another process's progress; bounded, and fails with a message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Workers:
    """Starts real Celery/RQ workers as subprocesses; stops every one at teardown."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = os.environ | {
            "PYTHONPATH": str(ROOT),
            "DEFER_STORE": env["store"],
            "DEFER_BROKER": env["broker"],
            "DEFER_RQ_URL": env["rq_url"],
            "DEFER_OUT": env["out"],
            "DEFER_INSTANCE": env["instance_path"],
        }
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def celery(self) -> subprocess.Popen[bytes]:
        return self._start(
            [
                str(BIN / "celery"),
                "-A",
                "tests.defer.celery_worker:celery_app",
                "worker",
                "--pool=solo",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            "celery",
        )

    def rq_burst(self, timeout: float = 60.0, *, scheduler: bool = False) -> int:
        """Run ``rq worker --burst`` until the queue is empty (first moving the scheduled
        jobs that are due onto it, with ``scheduler``); its exit code."""
        argv = [str(BIN / "rq"), "worker", "--burst", "--worker-class", "tests.defer.rq_worker.PromptWorker"]
        argv += ["--url", self.env["DEFER_RQ_URL"], "default"]
        proc = self._start([*argv, "--with-scheduler"] if scheduler else argv, "rq")
        return proc.wait(timeout)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logdir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture
def workers(defer_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    logdir = tmp_path / "worker-logs"
    logdir.mkdir()
    started = Workers(defer_env, logdir)
    try:
        yield started
    finally:
        started.stop()


def post(app: Flask, type: str, id: str, **extra: Any) -> Any:
    from ..conftest import generic_post

    return generic_post(app.test_client(), {"id": id, "type": type, **extra})
