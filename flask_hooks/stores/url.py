"""Open a store from its URL (``HOOKS_STORE``)."""

from __future__ import annotations

import importlib.util
import os
import re
from urllib.parse import parse_qs, urlsplit

from ..core.errors import ConfigError
from .base import NOT_A_FILE, DedupeStore
from .memory import MemoryStore

DEFAULT_URL = "sqlite:///flask_hooks.sqlite3"
#: Why ``urlsplit`` refused a URL: only an unclosed ``[`` of an IPv6 host makes it raise.
NOT_A_URL = "not a URL (an IPv6 host is written [::1])"

#: ``scheme://user:``, where a password may start (``[::1]:`` is a host and its port).
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:\[[0-9A-Fa-f:.]*\](?=:)|[^:@/?#]*):")
_HOST = r"(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~%-]*)"
#: After an ``@``: a host followed by its port or its path, so that ``@`` ends a password.
_HOST_AFTER = re.compile(rf"{_HOST}(?::\d+(?=[/?#]|\Z)|/)")
#: Where the query starts, after ``@host:port[/path]`` or ``@host/path`` or, with
#: no password at all, after the port (``localhost:6379/0?name=``): an ``@`` past
#: it is in a parameter's value.
_QUERY = re.compile(rf"(?:\A\d+|@{_HOST}(?::\d+|(?=/)))(?:/[^?#@\s]*)?\?[^=&#@/?\s]+=")
#: A query parameter that carries a credential (``?password=``, ``?ssl_password=``).
_SECRET_PARAM = re.compile(r"([?&;][^=&#]*(?:pass|pwd|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with its password (and password-like parameters) as ``***``.

    Store URLs are shown (``flask hooks routes``, errors, reprs); their
    passwords never are. ``redis://:pw@host/0`` -> ``redis://:***@host/0``.

    Only the userinfo is masked: ``redis://localhost:6379/0?client_name=a@b``
    is shown as it is. People write passwords with raw ``@``, ``#`` or ``/``,
    so the password runs to the last ``@``, unless what follows that one is
    no host with a port or a path and a query (``?name=``) starts before it,
    right after the port (then there is no password) or after an earlier
    ``@host:port`` or ``@host/path`` (the password ends there). When unsure
    it hides too much (``redis://:***@b``): only a password that itself holds
    such a port-then-query (``1?a=b``, ``x@h:1?a=b``), in a URL whose host
    has neither port nor path, would be shown.
    """
    return _SECRET_PARAM.sub(r"\1***", _masked_password(url))


def _masked_password(url: str) -> str:
    start = _USERINFO.match(url)
    if start is None:
        return url
    rest = url[start.end() :]
    end = rest.rfind("@")
    if end < 0:
        return url
    if not _HOST_AFTER.match(rest, end + 1):
        query = _QUERY.search(rest)
        if query is not None and not query.group().startswith("@"):
            return url  # host:port then a query holding the "@": no password
        if query is not None:
            end = query.start()
    return f"{url[: start.end()]}***{rest[end:]}"


def open_store(url: str, *, instance_path: str) -> DedupeStore:
    """``sqlite:///rel`` (under ``instance_path``), ``sqlite:////abs``, ``redis://``, ``memory://``.

    Query parameters are passed to the backend: ``?timeout=2&synchronous=normal``.
    """
    shown = masked_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" of an IPv6 host
        raise ConfigError(f"{shown!r}: {NOT_A_URL}") from None
    scheme = parts.scheme.lower()
    # Blank values kept: ``?timeout=`` is a mistake to report, not the default.
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        try:
            from .sqlite import SqliteStore
        except ImportError as exc:  # no fcntl: Windows
            raise ConfigError(
                f"{shown!r}: the embedded SQLite store needs a POSIX system (fcntl); use redis://,"
                " memory:// or a SQL store (sqlite+pysqlite:///..., postgresql+psycopg://...)"
            ) from exc
        if parts.netloc:
            raise ConfigError(f"{shown!r}: write sqlite:///relative/path or sqlite:////absolute/path")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path or path.endswith("/"):
            raise ConfigError(f"{shown!r} names no file")
        # Each would open another file than the one written, silently: a "#" ends the URL
        # (sqlite:///hooks#2.db is "hooks"), and "~" is no home here but a folder of that name.
        if "#" in url:
            raise ConfigError(f"{shown!r}: a '#' ends a URL, and the path stops before it; rename the file")
        if path.startswith("~"):
            raise ConfigError(f"{shown!r}: '~' is not expanded; write the absolute path, sqlite:////home/...")
        if path == ":memory:" or path.startswith("file:") or query.get("mode") == "memory":
            raise ConfigError(f"{shown!r}: {NOT_A_FILE}")
        # A misspelt option (``?synchronus=normal``, ``?timout=30``) would be ignored: the
        # store would run with a default its operator meant to change.
        unknown = sorted(set(query) - _SQLITE_PARAMS)
        if unknown:
            names = ", ".join(map(repr, unknown))
            takes = "the SQLite store takes ?timeout= and ?synchronous="
            raise ConfigError(f"{shown!r}: unknown parameter {names}; {takes}")
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
        if importlib.util.find_spec("redis") is None:
            raise ConfigError(f"{shown!r} needs redis-py: pip install 'flask-webhooks[redis]'")
        from .redis import RedisStore

        return RedisStore.from_url(url)
    if scheme.startswith("redis+"):  # redis+sentinel://: no store reads it, with SQLAlchemy or not
        raise ConfigError(f"unknown store URL {shown!r}; {_SCHEMES}{_REDIS_CLIENT}")
    if "+" in scheme or scheme in _SQL_SCHEMES:
        try:
            from .sql import SqlStore
        except ImportError as exc:
            # PostgreSQL's extra brings its driver too: one install, not two rounds of errors.
            extra = "postgresql" if scheme.split("+")[0] in ("postgresql", "postgres") else "sql"
            raise ConfigError(f"{shown!r} needs SQLAlchemy: pip install 'flask-webhooks[{extra}]'") from exc
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"unknown store URL {shown!r}; {_SCHEMES}") from None
        except ValueError:  # its text quotes the URL, so a password with '@' or ':' in it
            raise ConfigError(
                f"{shown!r} is no URL SQLAlchemy reads: a port that is no number, or a password"
                " with '@', ':' or '/' not percent-encoded"
            ) from None
        database = parsed.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        memory = memory or parsed.query.get("mode") == "memory"
        if parsed.get_backend_name() == "sqlite" and memory:
            raise ConfigError(f"{shown!r}: {NOT_A_FILE}")
        try:
            return SqlStore(url)
        except NoSuchModuleError:  # no dialect of that name: postgresql+typo://
            what = f"unknown store URL {shown!r}: no SQLAlchemy dialect {scheme!r}"
            raise ConfigError(f"{what}; {_SCHEMES}") from None
        except ModuleNotFoundError as exc:  # the URL's database driver
            top = (exc.name or "").partition(".")[0]
            extra = _DRIVER_PACKAGES.get(top, top)
            raise ConfigError(f"{shown!r} needs the {exc.name} driver: pip install {extra}") from None
        except ValueError as exc:  # ?timeout=abc, a port that is no number
            raise ConfigError(f"{shown!r}: {exc}") from None
    raise ConfigError(f"unknown store URL {shown!r}; {_SCHEMES}")


#: The store URLs :func:`open_store` takes, as an error says them.
_SCHEMES = (
    "use sqlite:///, redis://, rediss://, unix://, memory:// or a SQLAlchemy URL whose dialect is installed"
    " (postgresql+psycopg://..., mysql+pymysql://...)"
)
#: For a ``redis+...://`` URL: Sentinel has no URL here, but its client is a ``redis.Redis``.
_REDIS_CLIENT = "; for Redis Sentinel, pass its client: Hooks(store=RedisStore(sentinel.master_for(name)))"


#: The query parameters of a ``sqlite:`` URL: :class:`~flask_hooks.stores.sqlite.SqliteStore`'s options.
_SQLITE_PARAMS = frozenset({"timeout", "synchronous"})

#: What to install for a SQLAlchemy driver module of another name than its package's.
_DRIVER_PACKAGES = {
    "psycopg": "'flask-webhooks[postgresql]'",
    "MySQLdb": "mysqlclient",  # mysql:// and mariadb://, SQLAlchemy's default MySQL driver
    "mysql": "mysql-connector-python",  # mysql+mysqlconnector://
}

#: SQLAlchemy URL schemes without a driver part (``postgresql+psycopg`` has one).
_SQL_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"})
