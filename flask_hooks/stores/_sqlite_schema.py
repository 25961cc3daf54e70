"""The SQLite store's tables, and the migration of a file written by an older version.

``hooks_deliveries`` is the dedupe state machine, one row per (id, ns),
and for a kept delivery its inbox fields: everything that changes while
the delivery is processed (status, marks, attempts) and what the inbox
filters on (type, received_at). The kept body and headers, which never
change, are a row of ``hooks_kept`` that the delivery names by ``kept``:
an update of the delivery (a mark, a completion, an attempt) rewrites a
row of a few hundred bytes, never the body, and the body rows are
appended in ``seq`` order rather than inserted at random places. A
trigger deletes the body with its delivery, whatever deletes it.

Every version's schema is the 0.1 table plus the columns added since,
so a new file and a migrated one are the same: :func:`prepare`, run by
every new connection, creates what is missing and adds the columns that
``PRAGMA table_info`` lacks (``ALTER TABLE ... ADD COLUMN`` rewrites no
row). The file's ``PRAGMA user_version`` is left alone: the file may be
an app's own database, whose migrations use it.
"""

from __future__ import annotations

import sqlite3

#: The deliveries table exactly as 0.1 created it; the later columns are in :data:`_ADDED`.
_DELIVERIES_0_1 = """
CREATE TABLE IF NOT EXISTS hooks_deliveries (
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
) WITHOUT ROWID
"""

#: Columns added in 0.2 (the inbox), with their definitions; NULL ``kept``: not kept.
_ADDED = (
    # Until when the row is kept at all: the retention, never before ``expires_at``
    # (until when it counts as a duplicate). The purge goes by this one.
    ("retained_until", "REAL NOT NULL DEFAULT 0"),
    # "in-flight", "received", "ignored" or "failed", as last written.
    ("status", "TEXT NOT NULL DEFAULT 'in-flight'"),
    ("kept", "INTEGER"),  # hooks_kept.seq
    ("type", "TEXT"),
    ("received_at", "REAL"),
    ("secret_index", "INTEGER"),
    ("attempts", "TEXT"),  # core.inbox.encode_attempts
)

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS hooks_kept (
        seq INTEGER PRIMARY KEY,
        headers TEXT NOT NULL,
        body BLOB NOT NULL
    )""",
    # seq has no AUTOINCREMENT: only the oldest rows are ever deleted, so rowids
    # stay increasing, and AUTOINCREMENT costs an extra page write per line. Nor
    # has ns an index: the table is trimmed to about log_size rows per receiver,
    # so reading or trimming it scans a few thousand rows at most, while an index
    # would cost every delivery an extra b-tree insert.
    """CREATE TABLE IF NOT EXISTS hooks_log (
        seq INTEGER PRIMARY KEY,
        ns TEXT NOT NULL,
        status TEXT NOT NULL,
        entry TEXT NOT NULL
    )""",
    # 0.1 purged by expires_at; a completion changed it, and so this index, every time.
    "DROP INDEX IF EXISTS hooks_deliveries_expiry",
    "DROP INDEX IF EXISTS hooks_log_ns",  # early 0.1 files: see hooks_log above
    # The purge. A completion leaves it alone unless the TTL outlasts the retention.
    "CREATE INDEX IF NOT EXISTS hooks_deliveries_retention ON hooks_deliveries (retained_until)",
    # The inbox's list, newest first, and its keyset paging: the ORDER BY of every query.
    "CREATE INDEX IF NOT EXISTS hooks_deliveries_received"
    " ON hooks_deliveries (ns, received_at DESC, id DESC) WHERE received_at IS NOT NULL",
    # The status filter (the failures to replay), in the same order.
    "CREATE INDEX IF NOT EXISTS hooks_deliveries_status"
    " ON hooks_deliveries (ns, status, received_at DESC, id DESC) WHERE received_at IS NOT NULL",
    """CREATE TRIGGER IF NOT EXISTS hooks_deliveries_unkeep
        AFTER DELETE ON hooks_deliveries WHEN old.kept IS NOT NULL
        BEGIN DELETE FROM hooks_kept WHERE seq = old.kept; END""",
)


def prepare(db: sqlite3.Cursor) -> None:
    """Create or migrate the schema; in the caller's write transaction (``BEGIN IMMEDIATE``).

    On a current file it reads the schema and writes nothing.
    """
    db.execute(_DELIVERIES_0_1)
    have = {row[1] for row in db.execute("PRAGMA table_info(hooks_deliveries)")}
    for name, definition in _ADDED:
        if name not in have:
            db.execute(f"ALTER TABLE hooks_deliveries ADD COLUMN {name} {definition}")
    if "retained_until" not in have:
        # 0.1's records are kept as long as they count as duplicates, no shorter.
        db.execute("UPDATE hooks_deliveries SET retained_until = expires_at")
    for statement in _STATEMENTS:
        db.execute(statement)
