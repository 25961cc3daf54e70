"""The SQLite store on a disk that fills up: 503 while it is full, and back once room is made.

On a small tmpfs mounted for the test (root only; skipped elsewhere).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Hooks
from tests.conftest import generic_post


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, 1.2 MB of it taken by ``filler``."""
    disk = tmp_path / "small"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "filler").write_bytes(b"\0" * 1200 * 1024)
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.parametrize("restarted", [False, True], ids=["same-process", "restarted"])
def test_a_full_disk_is_503_and_the_room_made_is_not_taken_again_by_the_wal(
    small_disk: Path, make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, restarted: bool
) -> None:
    # The WAL, checkpointed only every 256 commits, filled the disk; the 1.2 MB freed went to
    # it again within 32 deliveries, then nothing could be checkpointed (the database had no
    # room to grow into) and every delivery was a 503 until the disk grew. The same in a
    # process started once the disk was full (a restart, a new worker), which had not seen it.
    ran: list[str] = []

    def receiver() -> Any:
        hooks = Hooks(store=f"sqlite:///{small_disk / 'hooks.db'}")
        hooks.on("*")(lambda event: ran.append(event.id))
        return make_app(hooks).test_client()

    client = receiver()

    def post(n: int) -> int:
        body = {"id": f"evt_{n}", "type": "resource.created", "data": {"note": "x" * 1000}}
        status: int = generic_post(client, body).status_code
        return status

    before: list[int] = []
    with caplog.at_level(logging.WARNING, logger="flask_hooks"):
        while before[-3:] != [503] * 3 and len(before) < 2000:  # until the disk is full
            before.append(post(len(before)))
    assert set(before) == {200, 503}, "the disk never filled"
    assert "has less than 64 MiB free" in caplog.text  # a small disk: said, and checkpointed
    assert "is full" in caplog.text
    acknowledged = {f"evt_{n}" for n, status in enumerate(before) if status == 200}
    (small_disk / "filler").unlink()
    if restarted:
        client = receiver()
    after = [post(n) for n in range(5000, 5100)]
    assert after == [200] * 100
    again = [generic_post(client, {"id": id, "type": "resource.created"}) for id in sorted(acknowledged)]
    assert all(json.loads(answer.data) == {"status": "duplicate"} for answer in again)
    assert len(ran) == len(set(ran))
    assert os.path.getsize(small_disk / "hooks.db-wal") < 1024 * 1024


def test_a_checkpointed_wal_gives_its_space_back(
    tmp_path: Path, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without journal_size_limit, a WAL that a burst grew kept its size until the app stopped.
    from flask_hooks.stores import _sqlite_conn

    monkeypatch.setattr(_sqlite_conn, "_WAL_KEEP", 64 * 1024)
    hooks = Hooks(store=f"sqlite:///{tmp_path / 'hooks.db'}")
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    client = app.test_client()
    for n in range(60):
        generic_post(client, {"id": f"evt_{n}", "type": "resource.created", "data": {"note": "x" * 2048}})
    wal = tmp_path / "hooks.db-wal"
    assert os.path.getsize(wal) > 1024 * 1024
    hooks.receiver(app).store.checkpoint()  # type: ignore[attr-defined]
    generic_post(client, {"id": "evt_next", "type": "resource.created"})
    assert os.path.getsize(wal) < 256 * 1024
