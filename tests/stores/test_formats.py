"""Persisted formats are versioned: rows written by 0.1.0 read with today's code, and a SQLite
file written by 0.1.0 is migrated when opened."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flask_hooks.core.inbox import Kept
from flask_hooks.core.store import (
    FORMAT_VERSION,
    LogEntry,
    Reply,
    decode_handlers,
    decode_reply,
    encode_handlers,
    encode_reply,
)
from flask_hooks.stores.sqlite import SqliteStore

T0 = 1_700_000_000.0
# Exactly what 0.1.0 wrote: a positional log line, a bare handler mapping, a reply without "v".
OLD_LOG_LINE = '["evt_1","a.b","error",500,"handler failed",1,1700000000000000,250000,["one","two"]]'
OLD_REPLY = json.dumps({"status": 202, "body": "eyJvayI6MX0=", "content_type": "application/json"})
OLD_HANDLERS = json.dumps({"first": json.loads(OLD_REPLY), "v": None})


def test_old_log_lines_replies_and_marks_decode() -> None:
    assert LogEntry.from_json(OLD_LOG_LINE) == LogEntry(
        "evt_1", "a.b", "error", 500, "handler failed", 1, T0, 0.25, ("one", "two")
    )
    assert decode_reply(OLD_REPLY) == Reply(202, b'{"ok":1}')
    assert decode_handlers(OLD_HANDLERS) == {"first": Reply(202, b'{"ok":1}'), "v": None}


def test_new_records_carry_a_version_and_ignore_fields_added_later() -> None:
    entry = LogEntry("evt_2", "a.b", "received", 200, "", 0, T0, 0.001, ("h",))
    data = json.loads(entry.to_json())
    assert data["v"] == FORMAT_VERSION
    data["added_in_a_later_version"] = {"anything": True}
    assert LogEntry.from_json(json.dumps(data)) == entry
    marks = {"h": Reply(200, b"x"), "v": None}
    assert json.loads(encode_handlers(marks))["v"] == FORMAT_VERSION
    assert decode_handlers(encode_handlers(marks)) == marks


def test_a_replys_headers_are_kept_and_old_replies_have_none() -> None:
    reply = Reply(200, b"ok", "text/plain", (("X-Slack-No-Retry", "1"), ("Link", "<a>"), ("Link", "<b>")))
    assert decode_reply(encode_reply(reply)) == reply
    assert decode_handlers(encode_handlers({"h": reply})) == {"h": reply}
    assert "headers" not in json.loads(encode_reply(Reply(200, b"x")) or "")  # as 0.1.0 wrote it
    assert decode_reply(OLD_REPLY) == Reply(202, b'{"ok":1}', "application/json", ())


#: The schema 0.1 created, in its two shapes (early files: key (ns, id), AUTOINCREMENT, a log index).
SCHEMA_0_1 = """
CREATE TABLE hooks_deliveries (
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    token TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL,
    handlers TEXT NOT NULL DEFAULT '{}',
    reply TEXT,
    outcome TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (id, ns)
) WITHOUT ROWID;
CREATE INDEX hooks_deliveries_expiry ON hooks_deliveries (expires_at);
CREATE TABLE hooks_log (seq INTEGER PRIMARY KEY, ns TEXT NOT NULL, status TEXT NOT NULL, entry TEXT NOT NULL);
"""
EARLY_0_1 = (
    SCHEMA_0_1.replace("PRIMARY KEY (id, ns)", "PRIMARY KEY (ns, id)").replace(
        "seq INTEGER PRIMARY KEY,", "seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    )
    + "CREATE INDEX hooks_log_ns ON hooks_log (ns, seq);"
)


def written_by_0_1_0(path: Path, schema: str) -> None:
    """A file as 0.1.0 left it: its tables (WAL), a log line, a done and a released record."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
        db.execute("INSERT INTO hooks_log (ns, status, entry) VALUES ('ns', 'error', ?)", (OLD_LOG_LINE,))
        db.execute(
            "INSERT INTO hooks_deliveries"
            " (ns, id, state, token, lease_until, expires_at, handlers, reply, outcome)"
            " VALUES ('ns', 'done_1', 'done', '', 0, ?, '{}', ?, 'received'),"
            " ('ns', 'free_1', 'free', '', 0, ?, ?, NULL, '')",
            (T0 + 3600, OLD_REPLY, T0 + 3600, OLD_HANDLERS),
        )
    db.close()


def schema_of(path: Path) -> dict[str, object]:
    """Each table's columns, each index's and trigger's definition."""
    with sqlite3.connect(path) as db:
        sql = "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite%'"
        rows = db.execute(sql).fetchall()
        shape = {
            name: db.execute(f"PRAGMA table_info({name})").fetchall() if type == "table" else text
            for type, name, text in rows
        }
    db.close()
    return shape


@pytest.mark.parametrize("schema", [SCHEMA_0_1, EARLY_0_1], ids=["0.1", "early-0.1"])
def test_a_sqlite_file_written_by_0_1_0_is_read(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "hooks.sqlite3"
    written_by_0_1_0(path, schema)
    store = SqliteStore(str(path))
    [line] = store.deliveries("ns")
    assert (line.id, line.handlers, line.duration) == ("evt_1", ("one", "two"), 0.25)
    done = store.claim("ns", "done_1", now=T0, lease=30, ttl=3600)
    assert (done.state, done.reply) == ("done", Reply(202, b'{"ok":1}'))
    retry = store.claim("ns", "free_1", now=T0, lease=30, ttl=3600)
    assert retry.state == "new"
    assert dict(retry.handlers) == {"first": Reply(202, b'{"ok":1}'), "v": None}
    store.close()


def test_a_0_1_0_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "hooks.sqlite3"
    written_by_0_1_0(path, SCHEMA_0_1)
    store = SqliteStore(str(path))
    store.deliveries("ns")  # opens, and migrates
    fresh = tmp_path / "fresh.sqlite3"
    SqliteStore(str(fresh)).deliveries("ns")
    assert schema_of(path) == schema_of(fresh)  # the columns added, 0.1's expiry index gone
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, retained_until, expires_at FROM hooks_deliveries").fetchall()
    db.close()
    assert sorted(rows) == [("done_1", T0 + 3600, T0 + 3600), ("free_1", T0 + 3600, T0 + 3600)]
    # Kept as long as it dedupes, no shorter: the purge goes by retained_until.
    assert store.purge("ns", now=T0 + 3599) == 0
    assert store.claim("ns", "done_1", now=T0 + 3599, lease=30, ttl=3600).state == "done"
    # A record 0.1 wrote has no kept copy: its next claim keeps one.
    keep = Kept("a.b", b"{}", (), T0, None, 86400)
    retry = store.claim("ns", "free_1", now=T0, lease=30, ttl=3600, keep=keep)
    store.release("ns", "free_1", retry.token, now=T0, entry=LogEntry("free_1", "a.b", "error", 500))
    kept = store.get("ns", "free_1")
    assert kept is not None and (kept.body, kept.status, len(kept.attempts)) == (b"{}", "failed", 1)
    assert store.get("ns", "done_1") is None
    assert store.purge("ns", now=T0 + 3601) == 1  # done_1; free_1 is retained for a day now
    store.close()
    assert SqliteStore(str(path)).deliveries("ns")  # a migrated file opens again as it is


def test_a_record_a_0_1_0_worker_writes_into_a_migrated_file_is_kept_while_it_dedupes(
    tmp_path: Path,
) -> None:
    """A rolling restart: a 0.1.0 worker still running completes a delivery in the file a new
    worker migrated, in 0.1.0's statements, which leave ``retained_until`` at its default, 0.
    The new worker's purge took that for a retention long over and deleted the record, so the
    sender's duplicate ran the handlers again."""
    path = tmp_path / "hooks.sqlite3"
    written_by_0_1_0(path, SCHEMA_0_1)
    store = SqliteStore(str(path))
    store.deliveries("ns")  # migrates
    with sqlite3.connect(path) as db:  # 0.1.0's claim, then its completion
        db.execute(
            "INSERT OR IGNORE INTO hooks_deliveries (ns, id, state, token, lease_until, expires_at)"
            " VALUES ('ns', 'old_worker', 'inflight', 't', ?, ?)",
            (T0 + 30, T0 + 3600),
        )
        db.execute(
            "UPDATE hooks_deliveries SET state = 'done', token = '', reply = NULL, outcome = 'received',"
            " expires_at = ? WHERE ns = 'ns' AND id = 'old_worker' AND token = 't'",
            (T0 + 3600,),
        )
    db.close()
    assert store.purge("ns", now=T0 + 60) == 0
    assert store.claim("ns", "old_worker", now=T0 + 60, lease=30, ttl=3600).state == "done"
    assert store.purge("ns", now=T0 + 3601) == 3  # once it expires, with 0.1.0's own two
    store.close()
