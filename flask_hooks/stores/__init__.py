"""Dedupe stores: the abstract state machine and its backends.

``SqliteStore`` is imported on first use: it needs ``fcntl``, which
Windows lacks, and the other stores must work there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Claim as Claim
from .base import DedupeStore as DedupeStore
from .base import LogEntry as LogEntry
from .base import Reply as Reply
from .memory import MemoryStore as MemoryStore
from .url import DEFAULT_URL as DEFAULT_URL
from .url import open_store as open_store

if TYPE_CHECKING:
    from .sqlite import SqliteStore as SqliteStore


#: Not ``SqliteStore``: a star import would import it, and ``fcntl`` with it (not on Windows).
__all__ = ["DEFAULT_URL", "Claim", "DedupeStore", "LogEntry", "MemoryStore", "Reply", "open_store"]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "SqliteStore"})


if not TYPE_CHECKING:  # type checkers take the import above: a misspelled name is an error there

    def __getattr__(name: str) -> Any:
        if name == "SqliteStore":
            from .sqlite import SqliteStore

            return SqliteStore
        raise AttributeError(f"module 'flask_hooks.stores' has no attribute {name!r}")
