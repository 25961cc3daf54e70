"""The example's own data: submitted jobs and received resource events.

Plain ``sqlite3`` in the instance folder, one short connection per call,
so the app, its webhook handlers and the demo share nothing but a file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from flask import current_app

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    remote_id TEXT NOT NULL DEFAULT '',
    prompt TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_remote ON jobs (provider, remote_id);
CREATE TABLE IF NOT EXISTS resource_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    object_id TEXT NOT NULL DEFAULT '',
    secret_index INTEGER NOT NULL,
    received_at REAL NOT NULL
);
"""


def init_db(path: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA)


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A connection to the app's database, committed on success."""
    conn = sqlite3.connect(current_app.config["EXAMPLE_DATABASE"], timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def add_job(provider: str, prompt: str, state: str = "submitting") -> int:
    now = time.time()
    with connect() as conn:
        cur = conn.execute(
            "INSERT INTO jobs (provider, prompt, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (provider, prompt, state, now, now),
        )
        return int(cur.lastrowid or 0)


def set_remote_id(job_id: int, remote_id: str, state: str) -> None:
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET remote_id = ?, state = ?, updated_at = ? WHERE id = ?",
            (remote_id, state, time.time(), job_id),
        )


def fail_job(job_id: int, reason: str) -> None:
    with connect() as conn:
        conn.execute(
            "UPDATE jobs SET state = 'submit-failed', result = ?, updated_at = ? WHERE id = ?",
            (reason, time.time(), job_id),
        )


def update_job(provider: str, remote_id: str, state: str, result: str) -> bool:
    """Record a callback's outcome; False when no job has that remote id."""
    with connect() as conn:
        cur = conn.execute(
            "UPDATE jobs SET state = ?, result = ?, updated_at = ? WHERE provider = ? AND remote_id = ?",
            (state, result, time.time(), provider, remote_id),
        )
        return cur.rowcount > 0


def jobs() -> list[dict[str, Any]]:
    with connect() as conn:
        return [dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT 100")]


def add_resource_event(id: str, type: str, object_id: str, secret_index: int, received_at: float) -> None:
    # flask_hooks runs a handler once per delivery id; OR IGNORE keeps it
    # idempotent all the same if a crash lands between this and the ack.
    with connect() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO resource_events (id, type, object_id, secret_index, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (id, type, object_id, secret_index, received_at),
        )


def resource_events() -> list[dict[str, Any]]:
    with connect() as conn:
        rows = conn.execute("SELECT * FROM resource_events ORDER BY received_at DESC, id LIMIT 100")
        return [dict(row) for row in rows]
