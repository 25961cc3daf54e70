"""Shared by the store backends: the protocol (from the core), tokens, forks.

The protocol and its records live in :mod:`flask_hooks.core.store` and are
re-exported here for the backends and for custom stores.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import zlib

from ..core.store import CLOCK_SKEW as CLOCK_SKEW
from ..core.store import FORMAT_VERSION as FORMAT_VERSION
from ..core.store import Claim as Claim
from ..core.store import ClaimState as ClaimState
from ..core.store import DedupeStore as DedupeStore
from ..core.store import LogEntry as LogEntry
from ..core.store import Reply as Reply
from ..core.store import decode_handlers as decode_handlers
from ..core.store import decode_reply as decode_reply
from ..core.store import encode_handlers as encode_handlers
from ..core.store import encode_reply as encode_reply
from ..core.store import lease_is_live as lease_is_live


class _Process:
    """Per-process state that must not survive a fork (gunicorn forks workers).

    ``generation`` changes in every forked child, so stores can drop
    connections inherited from the parent without a ``getpid`` system call
    per operation (system calls are what a delivery's time goes to in
    sandboxed hosts).
    """

    generation = 0
    token_prefix = secrets.token_hex(8)
    counter = itertools.count()
    #: Held by the thread that drops what a store inherited, so no other does it again.
    lock = threading.Lock()

    @classmethod
    def forked(cls) -> None:
        cls.generation += 1
        cls.token_prefix = secrets.token_hex(8)
        cls.counter = itertools.count()
        cls.lock = threading.Lock()


os.register_at_fork(after_in_child=_Process.forked)


def fork_lock() -> threading.Lock:
    """This process's lock for the first thread to notice a fork (a new one in every child)."""
    return _Process.lock


def process_generation() -> int:
    """Changes in every forked child; compare to detect inherited resources."""
    return _Process.generation


def new_token() -> str:
    """A claim token unique across processes and machines.

    It fences claims (a worker whose lease expired cannot complete a newer
    claim) and never leaves the server, so it must be unique, not secret:
    a random prefix per process (new in every fork) and a counter.
    """
    return f"{_Process.token_prefix}.{next(_Process.counter):x}"


def takes_turn(seq: int, ns: str, every: int) -> bool:
    """Whether log line ``seq`` of receiver ``ns`` is the one in about ``every`` that does
    housekeeping (a trim, a sweep).

    Not ``seq % every``: the sequence is every receiver's, and one whose lines all
    took odd numbers (two receivers fed in turn) would never take a turn. A hash
    of both is as steady as the sequence and spreads each receiver's turns over
    its own lines.
    """
    return bool(seq) and zlib.crc32(f"{seq}:{ns}".encode()) % every == 0


#: Why an in-memory SQLite database (``:memory:``, ``""``, ``mode=memory``) is refused, by the
#: SQLite store and by the SQL store's URLs alike (SQLite docs, "In-Memory Databases").
NOT_A_FILE = (
    "give a file path, or memory:// for a process-local store: an in-memory SQLite database"
    " is one per connection (here, per thread) and would deduplicate nothing"
)
