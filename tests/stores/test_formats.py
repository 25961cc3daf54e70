"""Persisted formats are versioned: rows written by 0.1.0 read with today's code."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from flask_hooks.core.store import (
    FORMAT_VERSION,
    LogEntry,
    Reply,
    decode_handlers,
    decode_reply,
    encode_handlers,
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


def test_a_sqlite_file_written_by_0_1_0_is_read(tmp_path: Path) -> None:
    path = tmp_path / "hooks.sqlite3"
    store = SqliteStore(str(path))
    store.deliveries("ns")  # creates the schema, as init_app does
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO hooks_log (ns, status, entry) VALUES ('ns', 'error', ?)", (OLD_LOG_LINE,))
        db.execute(
            "INSERT INTO hooks_deliveries"
            " (ns, id, state, token, lease_until, expires_at, handlers, reply, outcome)"
            " VALUES ('ns', 'done_1', 'done', '', 0, ?, '{}', ?, 'received'),"
            " ('ns', 'free_1', 'free', '', 0, ?, ?, NULL, '')",
            (T0 + 3600, OLD_REPLY, T0 + 3600, OLD_HANDLERS),
        )
    [line] = store.deliveries("ns")
    assert (line.id, line.handlers, line.duration) == ("evt_1", ("one", "two"), 0.25)
    done = store.claim("ns", "done_1", now=T0, lease=30, ttl=3600)
    assert (done.state, done.reply) == ("done", Reply(202, b'{"ok":1}'))
    retry = store.claim("ns", "free_1", now=T0, lease=30, ttl=3600)
    assert retry.state == "new"
    assert dict(retry.handlers) == {"first": Reply(202, b'{"ok":1}'), "v": None}
    store.close()
