"""The two apps compared: flask_hooks, and the same work written by hand.

The hand-written view does what a careful developer would write without
the extension: verify the HMAC in constant time, parse the JSON, claim
the id with a lease (memory: a dict under a lock; SQLite: one short
``BEGIN IMMEDIATE`` transaction), run the handler, record completion and
one log line, answer 200. ``create_app()`` reads ``BENCH_KIND`` and
``BENCH_STORE`` so gunicorn can serve either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from typing import Any

from flask import Flask, Response, request

from flask_hooks import Event, Hooks

from .common import SECRET


def handler_work(payload: Any) -> None:
    """The user's handler: trivial, so the framework's cost is what shows."""
    return None


def hooks_app(store: str) -> Flask:
    app = Flask("bench_hooks")
    hooks = Hooks(app, secret=SECRET, store=store)

    @hooks.on("order")
    def on_order(event: Event) -> None:
        handler_work(event.payload)

    return app


class PlainMemory:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, tuple[str, float]] = {}
        self.log: list[str] = []

    def claim(self, id: str, now: float) -> str:
        with self.lock:
            state, until = self.records.get(id, ("", 0.0))
            if state == "done":
                return "done"
            if state == "inflight" and until > now:
                return "inflight"
            self.records[id] = ("inflight", now + 60)
            return "new"

    def complete(self, id: str, line: str) -> None:
        with self.lock:
            self.records[id] = ("done", 0.0)
            self.log.append(line)
            del self.log[:-1000]


class PlainSqlite:
    """One connection per thread; busy timeout as the only coordination.

    Same semantics as the store: a lease, a TTL (an indexed expiry column,
    as any cleanup job needs), one log line per completion.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None or getattr(self.local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS seen"
                " (id TEXT PRIMARY KEY, state TEXT, until REAL, token TEXT, expires REAL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires)")
            conn.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, line TEXT)")
            self.local.conn, self.local.pid = conn, os.getpid()
        return conn

    def claim(self, id: str, now: float) -> str:
        db = self.conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT state, until FROM seen WHERE id = ?", (id,)).fetchone()
            if row and row[0] == "done":
                return "done"
            if row and row[0] == "inflight" and row[1] > now:
                return "inflight"
            db.execute(
                "INSERT OR REPLACE INTO seen VALUES (?, 'inflight', ?, ?, ?)",
                (id, now + 60, secrets.token_hex(8), now + 86400),
            )
            return "new"
        finally:
            db.execute("COMMIT")

    def complete(self, id: str, line: str) -> None:
        db = self.conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE seen SET state = 'done', expires = ? WHERE id = ?", (time.time() + 86400, id))
        db.execute("INSERT INTO log (line) VALUES (?)", (line,))
        db.execute("COMMIT")


def plain_app(store: str) -> Flask:
    app = Flask("bench_plain")
    dedupe: PlainMemory | PlainSqlite = (
        PlainMemory() if store == "memory://" else PlainSqlite(store.removeprefix("sqlite:///"))
    )
    key = SECRET.encode()

    @app.post("/webhooks")
    def receive() -> Response | tuple[dict[str, str], int]:
        body = request.get_data()
        given = request.headers.get("X-Webhook-Signature", "")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            return {"status": "rejected"}, 401
        try:
            payload = json.loads(body)
            id, type = str(payload["id"]), str(payload["type"])
        except (ValueError, KeyError, TypeError):
            return {"status": "invalid"}, 400
        state = dedupe.claim(id, time.time())
        if state == "inflight":
            return {"status": "in-flight"}, 409
        if state == "new":
            handler_work(payload)
            dedupe.complete(id, json.dumps({"id": id, "type": type, "status": "received"}))
        return {"status": "received"}, 200

    return app


def create_app() -> Flask:
    kind = os.environ.get("BENCH_KIND", "hooks")
    store = os.environ.get("BENCH_STORE", "memory://")
    return hooks_app(store) if kind == "hooks" else plain_app(store)
