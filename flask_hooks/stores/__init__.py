"""Dedupe stores: the abstract state machine and its backends."""

from .base import Claim as Claim
from .base import DedupeStore as DedupeStore
from .base import LogEntry as LogEntry
from .base import Reply as Reply
from .memory import MemoryStore as MemoryStore
from .sqlite import SqliteStore as SqliteStore
from .url import DEFAULT_URL as DEFAULT_URL
from .url import open_store as open_store
