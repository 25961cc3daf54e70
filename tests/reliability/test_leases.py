"""Leases under real gunicorn workers: a slow handler keeps its claim; memory:// warns."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import StartGunicorn
from .test_gunicorn import _wait_for, store_url  # noqa: F401 - the parametrised store fixture

pytestmark = pytest.mark.slow

LEASE = 1.0


def test_a_handler_outliving_its_lease_runs_once(gunicorn: StartGunicorn, store_url: str) -> None:  # noqa: F811
    server = gunicorn(store_url, lease=LEASE)
    block = server.workdir / "block"
    block.touch()
    payload = {"id": "evt_slow", "type": "job.block"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(server.post, payload, 30)
        _wait_for(lambda: server.lines("started"))
        started = time.monotonic()
        copies = []
        while time.monotonic() < started + 3 * LEASE:  # the first lease ran out long ago
            copies.append(server.post(payload))
            time.sleep(0.1)
        block.unlink()
        assert first.result().status_code == 200
    assert {c.status_code for c in copies} == {409}
    assert all(1 <= int(c.headers["Retry-After"]) <= LEASE + 1 for c in copies)
    assert [id for id, _ in server.lines("started")] == ["evt_slow"]
    assert server.post(payload).json() == {"done": "evt_slow"}

