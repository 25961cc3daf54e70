"""The store and inbox contracts for ``SqlStore``, on PostgreSQL and on SQLite through SQLAlchemy."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_hooks.stores.sql import SqlStore
from tests.postgres import pg_url, postgres  # noqa: F401 - fixtures
from tests.stores.test_contract import MakeStore, StoreContract
from tests.stores.test_inbox_contract import InboxContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def make_store(self, pg_url: str) -> MakeStore:  # noqa: F811
        return lambda **kw: SqlStore(pg_url, **kw)


class TestPostgresInbox(InboxContract):
    @pytest.fixture
    def make_store(self, pg_url: str) -> MakeStore:  # noqa: F811
        return lambda **kw: SqlStore(pg_url, **kw)


class TestSqlAlchemySqliteStore(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda **kw: SqlStore(f"sqlite:///{tmp_path / 'hooks.sqlite3'}", **kw)


class TestSqlAlchemySqliteInbox(InboxContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda **kw: SqlStore(f"sqlite:///{tmp_path / 'hooks.sqlite3'}", **kw)
