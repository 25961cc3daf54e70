"""Open a store from its URL (``HOOKS_STORE``)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from ..core.errors import ConfigError
from .base import DedupeStore
from .memory import MemoryStore
from .sqlite import NOT_A_FILE, SqliteStore

DEFAULT_URL = "sqlite:///flask_hooks.sqlite3"


def open_store(url: str, *, instance_path: str) -> DedupeStore:
    """``sqlite:///rel`` (under ``instance_path``), ``sqlite:////abs``, ``redis://``, ``memory://``.

    Query parameters are passed to the backend: ``?timeout=2&synchronous=normal``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(f"{url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"{url!r} names no file")
        if path == ":memory:" or path.startswith("file:") or query.get("mode") == "memory":
            raise ConfigError(f"{url!r}: {NOT_A_FILE}")
        if not os.path.isabs(path):
            path = os.path.join(instance_path, path)
        try:
            return SqliteStore(
                path,
                timeout=float(query.get("timeout", 2.0)),
                synchronous=query.get("synchronous", "FULL"),
            )
        except ValueError as exc:
            raise ConfigError(f"{url!r}: {exc}") from None
    if scheme in {"redis", "rediss", "unix"}:
        from .redis import RedisStore

        return RedisStore.from_url(url)
    raise ConfigError(f"unknown store URL {url!r}; use sqlite:///, redis:// or memory://")
