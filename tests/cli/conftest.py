"""Apps on memory:// stores, and real HTTP servers on free loopback ports for ``flask hooks send``.

The commands read whatever store a receiver has, and every test here runs
the server (a thread) and the CLI in one process, so ``memory://`` is the
default; ``flask run`` tests in their own process use their app's store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_hooks import Hooks
from tests.helpers import free_port, stop_process, wait_for_port

FLASK = os.path.join(os.path.dirname(sys.executable), "flask")


@pytest.fixture
def make_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """The suite's app factory with ``HOOKS_STORE="memory://"`` unless a test says otherwise."""

    def factory(*hooks: Hooks, **config: Any) -> Flask:
        config.setdefault("HOOKS_STORE", "memory://")
        return make_app(*hooks, **config)

    return factory


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Start ``app`` on 127.0.0.1 in a thread; every server is shut down after the test."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FlaskRun:
    """``flask --app <file> run`` in its own process on a free loopback port."""

    def __init__(self, app_file: Path, port: int) -> None:
        self.app_file = app_file
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def flask(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``flask --app <file> ...`` as a user would, from the app's folder."""
        return subprocess.run(
            [FLASK, "--app", str(self.app_file), *args],
            cwd=self.app_file.parent,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [FLASK, "--app", str(self.app_file), "run", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.app_file.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, "flask run")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5)
            self.proc = None


@pytest.fixture
def flask_run(tmp_path: Path) -> Iterator[Callable[[str], FlaskRun]]:
    """Write an app module to ``tmp_path`` and serve it with ``flask run``; stopped after."""
    started: list[FlaskRun] = []

    def start(source: str) -> FlaskRun:
        app_file = tmp_path / "hooks_app.py"
        app_file.write_text(source)
        server = FlaskRun(app_file, free_port())
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
