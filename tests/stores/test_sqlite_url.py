"""``sqlite:`` store URLs: files only, never a database per connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.core.errors import ConfigError
from flask_hooks.stores.sqlite import SqliteStore
from flask_hooks.stores.url import open_store


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite:///:memory:?timeout=1",
        "sqlite:///file::memory:?cache=shared",
        "sqlite:///file:hooks?mode=memory&cache=shared",
        "sqlite:///hooks.sqlite3?mode=memory",
        # Through SQLAlchemy (the SQL store): a raw TypeError from create_engine before.
        "sqlite+pysqlite:///:memory:",
        "sqlite+pysqlite://",
        "sqlite+pysqlite:///file::memory:?cache=shared&uri=true",
        "sqlite+pysqlite:///file:hooks?mode=memory&uri=true",
    ],
)
def test_an_in_memory_database_is_refused(tmp_path: Path, url: str) -> None:
    """SQLite gives each connection, so each thread, its own in-memory database: nothing is deduplicated."""
    with pytest.raises(ConfigError, match="memory://") as info:
        open_store(url, instance_path=str(tmp_path))
    assert "file path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:", "file:hooks.sqlite3?mode=memory"])
def test_the_store_refuses_them_too(path: str) -> None:
    with pytest.raises(ValueError, match="memory://"):
        SqliteStore(path)


def test_init_app_refuses_it(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="memory://"):
        make_app(Hooks(), HOOKS_STORE="sqlite:///:memory:")


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "1e10", "2147484", "0", "0.0"])
def test_a_timeout_that_is_no_bound_is_refused(tmp_path: Path, timeout: str) -> None:
    """Nor one of 0, which never waits: four threads delivering at once got a 503 for three
    deliveries in four, each meeting another's write."""
    with pytest.raises(ConfigError, match="timeout"):
        open_store(f"sqlite:///hooks.sqlite3?timeout={timeout}", instance_path=str(tmp_path))


def test_file_paths_are_relative_to_the_instance_folder_or_absolute(tmp_path: Path) -> None:
    relative = open_store("sqlite:///sub/hooks.sqlite3?timeout=0.5", instance_path=str(tmp_path))
    absolute = open_store(f"sqlite:///{tmp_path}/abs.sqlite3", instance_path="/nonexistent")
    assert isinstance(relative, SqliteStore) and isinstance(absolute, SqliteStore)
    assert (relative.path, relative.timeout) == (str(tmp_path / "sub" / "hooks.sqlite3"), 0.5)
    assert absolute.path == str(tmp_path / "abs.sqlite3")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("timout=30", "'timout'"),  # a misspelt option would leave the 2 s default
        ("synchronus=normal", "'synchronus'"),
        ("mode=ro", "'mode'"),  # SQLite's own URI options are not passed to it
        ("timeout=1&cache=shared", "'cache'"),
    ],
)
def test_an_unknown_parameter_is_refused(tmp_path: Path, query: str, named: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown parameter {named}.*timeout=.*synchronous="):
        open_store(f"sqlite:///hooks.sqlite3?{query}", instance_path=str(tmp_path))


@pytest.mark.parametrize("name", ["timeout", "synchronous"])
def test_a_blank_value_is_refused_not_the_default(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}="):
        open_store(f"sqlite:///hooks.sqlite3?{name}=", instance_path=str(tmp_path))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite:///hooks#2.sqlite3", "'#' ends a URL"),  # opened "hooks"
        ("sqlite:////srv/app/hooks#prod.sqlite3", "'#' ends a URL"),
        ("sqlite:///~/hooks.sqlite3", "'~' is not expanded"),  # made a folder named "~"
        ("sqlite:///data/", "names no file"),  # a 503 for every delivery
    ],
)
def test_a_path_that_would_open_another_file_is_refused(tmp_path: Path, url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        open_store(url, instance_path=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_file_whose_name_holds_memory_is_a_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite+pysqlite:///{tmp_path / 'a:memory:b.db'}", instance_path=str(tmp_path))
    store.close()


def test_a_url_sqlalchemy_cannot_read_is_refused_without_quoting_its_password(tmp_path: Path) -> None:
    # SQLAlchemy's ValueError came out raw, and its text quoted the password's end ('w0rd@db').
    with pytest.raises(ConfigError, match="percent-encoded") as info:
        open_store("postgresql+psycopg://admin:p@ss:w0rd@db/app", instance_path=str(tmp_path))
    assert "w0rd" not in str(info.value) and "p@ss" not in str(info.value)
