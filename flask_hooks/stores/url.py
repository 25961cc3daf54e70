"""Open a store from its URL (``HOOKS_STORE``)."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

from ..core.errors import ConfigError
from .base import DedupeStore
from .memory import MemoryStore

DEFAULT_URL = "sqlite:///flask_hooks.sqlite3"

#: ``scheme://user:`` then the password, up to the last ``@`` (it may hold ``@``, ``/`` or ``#``).
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*):.*@", re.DOTALL)
#: A query parameter that carries a credential (``?password=``, ``?ssl_password=``).
_SECRET_PARAM = re.compile(r"([?&;][^=&#]*(?:pass|pwd|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with its password (and password-like parameters) as ``***``.

    Store URLs are shown (``flask hooks routes``, errors, reprs); their
    passwords never are. ``redis://:pw@host/0`` -> ``redis://:***@host/0``.
    """
    return _SECRET_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url))


def open_store(url: str, *, instance_path: str) -> DedupeStore:
    """``sqlite:///rel`` (under ``instance_path``), ``sqlite:////abs``, ``redis://``, ``memory://``.

    Query parameters are passed to the backend: ``?timeout=2&synchronous=normal``.
    """
    shown = masked_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        try:
            from .sqlite import NOT_A_FILE, SqliteStore
        except ImportError as exc:  # no fcntl: Windows
            raise ConfigError(
                f"{shown!r}: the embedded SQLite store needs a POSIX system (fcntl); use redis://,"
                " memory:// or a SQL store (sqlite+pysqlite:///..., postgresql+psycopg://...)"
            ) from exc
        if parts.netloc:
            raise ConfigError(f"{shown!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"{shown!r} names no file")
        if path == ":memory:" or path.startswith("file:") or query.get("mode") == "memory":
            raise ConfigError(f"{shown!r}: {NOT_A_FILE}")
        if not os.path.isabs(path):
            path = os.path.join(instance_path, path)
        try:
            return SqliteStore(
                path,
                timeout=float(query.get("timeout", 2.0)),
                synchronous=query.get("synchronous", "FULL"),
            )
        except ValueError as exc:
            raise ConfigError(f"{shown!r}: {exc}") from None
    if scheme in {"redis", "rediss", "unix"}:
        from .redis import RedisStore

        return RedisStore.from_url(url)
    if "+" in scheme or scheme in _SQL_SCHEMES:
        try:
            from .sql import SqlStore
        except ImportError as exc:
            raise ConfigError(f"{shown!r} needs SQLAlchemy: pip install 'flask-webhooks[sql]'") from exc
        return SqlStore(url)
    raise ConfigError(
        f"unknown store URL {shown!r}; use sqlite:///, redis://, memory:// or a SQLAlchemy URL"
        " (postgresql+psycopg://...)"
    )


#: SQLAlchemy URL schemes without a driver part (``postgresql+psycopg`` has one).
_SQL_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"})
