"""Shared fixtures: a real app per test and a real redis-server per session."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Hooks
from tests.helpers import free_port, stop_process, wait_for_port

SECRET = "whsec-test-secret"


def generic_signature(body: bytes, secret: str = SECRET) -> str:
    """Computed independently of flask_hooks, as the sender would."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def generic_post(
    client: Any, payload: Any, *, secret: str = SECRET, url: str = "/webhooks", **headers: str
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"X-Webhook-Signature": generic_signature(body, secret), "Content-Type": "application/json"}
    sent.update(headers)
    return client.post(url, data=body, headers=sent)


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    """A factory for real apps whose instance folder lives under ``tmp_path``."""

    def factory(*hooks: Hooks, **config: Any) -> Flask:
        app = Flask("hooks_test", instance_path=str(tmp_path / "instance"))
        app.config.update(TESTING=True, HOOKS_SECRET=SECRET, **config)
        for h in hooks:
            h.init_app(app)
        return app

    return factory


class RedisServer:
    """A real redis-server on a free loopback port; stopped at session end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed; run `make test`, which installs it")
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                self.proc.wait(0.2)  # exited at once: the port was taken after all
            except subprocess.TimeoutExpired:
                break
            if attempt == 2:
                pytest.fail(f"redis-server exited at start (status {self.proc.returncode})")
            self.port = free_port()
        wait_for_port(self.port, self.proc, "redis-server", timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5)
            self.proc = None

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's own, so stopping it disturbs nobody."""
    server = RedisServer(tmp_path_factory.mktemp("private-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's redis-server."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


os.environ.setdefault("FLASK_HOOKS_TESTING", "1")
