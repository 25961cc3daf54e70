"""The two apps compared: flask_hooks, and the same work written by hand.

The hand-written view does what a careful developer would write without
the extension: verify the HMAC in constant time, parse the JSON, claim
the id with a lease (memory: a dict under a lock; SQLite: one short
``BEGIN IMMEDIATE`` transaction; PostgreSQL: one psycopg transaction,
``INSERT ... ON CONFLICT DO NOTHING``), run the handler, record completion
and one log line, answer 200. ``create_app()`` reads ``BENCH_KIND`` and
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


def hooks_app(store: str, retention: float | None = 0) -> Flask:
    """Ours; the inbox off by default, as the hand-written view keeps no deliveries
    (``bench.inbox`` measures what keeping them costs)."""
    app = Flask("bench_hooks")
    hooks = Hooks(app, secret=SECRET, store=store, retention=retention)

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


class PlainPostgres:
    """psycopg 3, one connection per thread (opened again after a fork, or once closed).

    The same two transactions as the store: a claim (``INSERT ... ON CONFLICT
    DO NOTHING``, and for an id seen before, its row ``FOR UPDATE``), then the
    completion fenced by the claim's token with one log line. Tables of its
    own, created by :meth:`create_schema` before the workers start.
    """

    def __init__(self, url: str) -> None:
        self.dsn = self.libpq(url)
        self.local = threading.local()

    @staticmethod
    def libpq(url: str) -> str:
        """``postgresql+psycopg://...`` (SQLAlchemy's spelling) as libpq spells it."""
        return "postgresql://" + url.split("://", 1)[1]

    @classmethod
    def create_schema(cls, url: str) -> None:
        import psycopg

        with psycopg.connect(cls.libpq(url), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS plain_seen (id text PRIMARY KEY, state text NOT NULL,"
                " until double precision NOT NULL, token text NOT NULL, expires double precision NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS plain_seen_expires ON plain_seen (expires)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS plain_log (seq bigserial PRIMARY KEY, line text NOT NULL)"
            )

    def conn(self) -> Any:
        import psycopg

        conn: psycopg.Connection[Any] | None = getattr(self.local, "conn", None)
        if conn is None or conn.closed or getattr(self.local, "pid", None) != os.getpid():
            conn = psycopg.connect(self.dsn, connect_timeout=5)
            self.local.conn, self.local.pid = conn, os.getpid()
        return conn

    def claim(self, id: str, now: float) -> str:
        """As the others; the token stays with the thread, which completes what it claimed."""
        db = self.conn()
        token = self.local.token = secrets.token_hex(8)
        with db.transaction():
            inserted = db.execute(
                "INSERT INTO plain_seen VALUES (%s, 'inflight', %s, %s, %s) ON CONFLICT DO NOTHING",
                (id, now + 60, token, now + 86400),
            ).rowcount
            if inserted == 1:
                return "new"
            row = db.execute("SELECT state, until FROM plain_seen WHERE id = %s FOR UPDATE", (id,)).fetchone()
            if row and row[0] == "done":
                return "done"
            if row and row[0] == "inflight" and row[1] > now:
                return "inflight"
            db.execute(
                "UPDATE plain_seen SET state = 'inflight', until = %s, token = %s, expires = %s"
                " WHERE id = %s",
                (now + 60, token, now + 86400, id),
            )
            return "new"

    def complete(self, id: str, line: str) -> None:
        db = self.conn()
        with db.transaction():
            done = db.execute(
                "UPDATE plain_seen SET state = 'done', token = '', expires = %s"
                " WHERE id = %s AND state = 'inflight' AND token = %s",
                (time.time() + 86400, id, self.local.token),
            ).rowcount
            if done != 1:
                raise RuntimeError(f"lost the claim of {id}")
            db.execute("INSERT INTO plain_log (line) VALUES (%s)", (line,))


def plain_app(store: str) -> Flask:
    app = Flask("bench_plain")
    dedupe: PlainMemory | PlainSqlite | PlainPostgres
    if store == "memory://":
        dedupe = PlainMemory()
    elif store.startswith("postgresql"):
        dedupe = PlainPostgres(store)
    else:
        dedupe = PlainSqlite(store.removeprefix("sqlite:///"))
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
