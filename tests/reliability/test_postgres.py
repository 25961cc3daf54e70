"""Atomic handlers on PostgreSQL under real gunicorn: their rows commit exactly once.

``sql_app`` writes one row per committed handler run into ``handled``
(no unique constraint), in the transaction that records the handler's
success; the tests count those rows after storms, a SIGKILLed worker, a
frozen worker whose lease ran out, and a database restarted mid-storm.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import SECRET
from tests.helpers import free_port, wait_for_port
from tests.postgres import PostgresServer, pg_url, postgres  # noqa: F401 - fixtures

from .conftest import GUNICORN, ROOT, Gunicorn, signed
from .test_gunicorn import _wait_for

pytestmark = pytest.mark.slow

IDS = 2000
COPIES = 3
THREADS = 24
LEASE = 2.0

Start = Callable[..., Gunicorn]


@pytest.fixture
def sql_gunicorn(tmp_path: Path, pg_url: str) -> Iterator[Start]:  # noqa: F811
    """``start(lease=60)`` -> gunicorn (4 gthread workers) serving ``sql_app`` on ``pg_url``."""
    servers: list[Gunicorn] = []

    def start(*, lease: float = 60, workers: int = 4) -> Gunicorn:
        workdir = tmp_path / f"gunicorn-{len(servers)}"
        workdir.mkdir()
        port = free_port()
        env = dict(
            os.environ,
            SQL_APP_URL=pg_url,
            HOOKS_SECRET=SECRET,
            HOOKS_LEASE=str(lease),
            RELIABILITY_DIR=str(workdir),
        )
        options = f"-w {workers} -k gthread --threads 4 -b 127.0.0.1:{port} --preload --timeout 60"
        argv = [str(GUNICORN), *options.split(), "--graceful-timeout", "2", "--log-level", "warning"]
        with open(workdir / "gunicorn.log", "wb") as log:
            proc = subprocess.Popen(
                [*argv, "tests.reliability.sql_app:create_app()"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        servers.append(Gunicorn(proc, f"http://127.0.0.1:{port}/webhooks", workdir))
        wait_for_port(port, proc, "gunicorn", timeout=20)
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def committed(url: str) -> collections.Counter[str]:
    """How many times each event's handler rows were committed."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT event, count(*) FROM handled GROUP BY event")).all()
    finally:
        engine.dispose()
    return collections.Counter({event: count for event, count in rows})


class Sender:
    """A sender with a keep-alive connection per thread (``http.client``: the storm's client must
    not eat the CPU the server needs); retries what ``retry`` says until ``patience`` runs out."""

    def __init__(self, url: str, retry: frozenset[int] = frozenset({409}), patience: float = 60) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port, parts.path
        self.retry, self.patience = retry, patience
        self.local = threading.local()
        self.seen: collections.Counter[int] = collections.Counter()

    def send(self, id: str, type: str = "order.paid") -> tuple[int, object]:
        body, headers = signed({"id": id, "type": type})
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            conn = getattr(self.local, "conn", None) or http.client.HTTPConnection(
                self.host, self.port, timeout=10
            )
            self.local.conn = conn
            try:
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                status, data = response.status, response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                time.sleep(0.05)
                continue
            self.seen[status] += 1
            if status not in self.retry:
                return status, json.loads(data)
            time.sleep(0.02)
        return 0, None


def test_duplicate_storm_commits_every_handler_once(sql_gunicorn: Start, pg_url: str) -> None:  # noqa: F811
    server = sql_gunicorn()
    sender = Sender(server.url)
    ids = [f"evt_{n}" for n in range(IDS)]
    sent = [id for id in ids for _ in range(COPIES)]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(sender.send, sent))
    assert [status for status, _ in results] == [200] * len(sent)
    assert [body for _, body in results] == [{"booked": id} for id in sent]
    assert committed(pg_url) == dict.fromkeys(ids, 1)


def _blocked(
    server: Gunicorn, payload: dict[str, object], pool: ThreadPoolExecutor
) -> tuple[Future[requests.Response], int]:
    """Send ``payload`` (an ``order.block``) and wait until a worker holds it in its handler,
    the row written but not committed; the response to come, and that worker's pid."""
    (server.workdir / "block").touch()
    first = pool.submit(server.post, payload, 60)
    _wait_for(lambda: bool(server.lines("started")))
    [(_, pid)] = server.lines("started")
    return first, pid


def _until_200(server: Gunicorn, payload: dict[str, object], retry: set[int], limit: float = 25) -> list[int]:
    """Send ``payload`` until the answer is not one of ``retry``; every status seen."""
    statuses: list[int] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        response = server.post(payload)
        statuses.append(response.status_code)
        if response.status_code not in retry:
            break
        time.sleep(0.1)
    return statuses


def test_worker_killed_mid_atomic_handler_leaves_no_partial_write(
    sql_gunicorn: Start,
    pg_url: str,  # noqa: F811
) -> None:
    server = sql_gunicorn(lease=LEASE)
    payload: dict[str, object] = {"id": "evt_kill", "type": "order.block"}
    with ThreadPoolExecutor(1) as pool:
        first, victim = _blocked(server, payload, pool)  # its row is written, not committed
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(requests.ConnectionError):
            first.result()
    (server.workdir / "block").unlink()
    assert committed(pg_url) == {}  # the killed transaction rolled back
    statuses = _until_200(server, payload, {409})  # 409 until the victim's lease runs out
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}
    assert server.post(payload).json() == {"booked": "evt_kill"}
    assert committed(pg_url) == {"evt_kill": 1}
    assert [id for id, _ in server.lines("started")] == ["evt_kill", "evt_kill"]


def test_lease_lost_mid_atomic_handler_commits_once(sql_gunicorn: Start, pg_url: str) -> None:  # noqa: F811
    """A worker frozen (SIGSTOP) in its handler loses the lease; another takes over and
    commits; the first, thawed, finishes its handler, and its transaction rolls back."""
    server = sql_gunicorn(lease=LEASE)
    payload: dict[str, object] = {"id": "evt_frozen", "type": "order.block"}
    with ThreadPoolExecutor(1) as pool:
        first, frozen = _blocked(server, payload, pool)
        os.kill(frozen, signal.SIGSTOP)  # its lease keeper is frozen too
        try:
            (server.workdir / "block").unlink()
            statuses = _until_200(server, payload, {409, 503})
        finally:
            os.kill(frozen, signal.SIGCONT)
        late = first.result()
    # 409 until the lease runs out. Had the freeze caught the worker's lease keeper inside a
    # renewal, that transaction holds the row until the server ends it (the app's
    # idle_in_transaction_session_timeout): meanwhile claims wait for the lock, bounded (503).
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {409, 503}, statuses
    # The lease was lost: the fenced mark matched nothing, so nothing of it committed (409);
    # or, after that server timeout, the transaction was gone already (503).
    assert late.status_code in (409, 503), late.text  # the lease was lost: nothing of it committed
    [(_, survivor)] = [line for line in server.lines("started") if line[1] != frozen]
    assert committed(pg_url) == {"evt_frozen": 1}
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM handled")).scalars().all()
    finally:
        engine.dispose()
    assert pids == [survivor]
    assert server.post(payload).json() == {"booked": "evt_frozen"}


def test_postgres_restarted_mid_storm_loses_nothing_acknowledged(
    sql_gunicorn: Start,
    pg_url: str,  # noqa: F811
    postgres: PostgresServer,  # noqa: F811
) -> None:
    server = sql_gunicorn(lease=LEASE)
    sender = Sender(server.url, retry=frozenset({409, 500, 502, 503}), patience=60)
    ids = [f"evt_{n}" for n in range(600)]
    sent = [id for id in ids for _ in range(2)]
    acknowledged: list[str] = []

    def send(id: str) -> tuple[int, object]:
        status, body = sender.send(id)
        if status == 200:
            acknowledged.append(id)
        return status, body

    with ThreadPoolExecutor(THREADS) as pool:
        results = pool.map(send, sent)
        _wait_for(lambda: len(acknowledged) > len(sent) // 4)
        postgres.stop(mode="immediate")  # a crash: no checkpoint, recovery at the next start
        try:
            _wait_for(lambda: sender.seen[503] >= 20)
        finally:
            postgres.start()
        statuses = [status for status, _ in results]
    assert statuses == [200] * len(sent)
    assert set(sender.seen) <= {200, 409, 503}, sender.seen
    assert committed(pg_url) == dict.fromkeys(ids, 1)
