"""Real gunicorn (4 workers, loopback) serving ``receiver_app``; always stopped."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import SECRET
from tests.helpers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


def signed(payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    """A generic-provider delivery, signed as the sender would."""
    body = json.dumps(payload).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Webhook-Signature": digest, "Content-Type": "application/json"}


@dataclasses.dataclass
class Gunicorn:
    proc: subprocess.Popen[bytes]
    url: str
    workdir: Path

    def lines(self, name: str) -> list[tuple[str, int]]:
        path = self.workdir / name
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            id, pid = line.split()
            out.append((id, int(pid)))
        return out

    def post(self, payload: dict[str, object], timeout: float = 10) -> requests.Response:
        body, headers = signed(payload)
        return requests.post(self.url, data=body, headers=headers, timeout=timeout)

    def stop(self) -> None:
        stop_process(self.proc)


StartGunicorn = Callable[..., Gunicorn]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[StartGunicorn]:
    """``start(store_url, lease=60, workers=4, preload=True)`` -> a running server; all are
    stopped at teardown."""
    servers: list[Gunicorn] = []

    def start(store: str, *, lease: float = 60, workers: int = 4, preload: bool = True) -> Gunicorn:
        workdir = tmp_path / f"gunicorn-{len(servers)}"
        workdir.mkdir()
        port = free_port()
        env = dict(
            os.environ,
            HOOKS_STORE=store,
            HOOKS_SECRET=SECRET,
            HOOKS_LEASE=str(lease),
            RELIABILITY_DIR=str(workdir),
        )
        with open(workdir / "gunicorn.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    str(GUNICORN),
                    "-w",
                    str(workers),
                    "-k",
                    "gthread",
                    "--threads",
                    "4",
                    "-b",
                    f"127.0.0.1:{port}",
                    *(["--preload"] if preload else []),
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "2",
                    "--log-level",
                    "warning",
                    "tests.reliability.receiver_app:create_app()",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        server = Gunicorn(proc, f"http://127.0.0.1:{port}/webhooks", workdir)
        servers.append(server)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("gunicorn exited:\n" + (workdir / "gunicorn.log").read_text())
            try:
                requests.get(server.url, timeout=1)
                return server
            except requests.ConnectionError:
                time.sleep(0.05)
        pytest.fail("gunicorn did not start")

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


