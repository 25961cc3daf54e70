"""The SQL store's statements as their drivers take them, and driver errors on its cursor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_hooks.core.errors import StoreUnavailable
from flask_hooks.stores._sql_rendered import Cursor, Statements, render
from flask_hooks.stores._sql_schema import log

#: Dialects of engines that never connect.
POSTGRES = sa.create_engine("postgresql+psycopg://").dialect
SQLITE = sa.create_engine("sqlite://").dialect

t = sa.table("t", sa.column("a"), sa.column("b"))
#: A column set at execution, a parameter given at execution, and a value of its own.
UPDATE = t.update().where(t.c.a == sa.bindparam("k"), t.c.b == "fixed")


def test_a_positional_paramstyle_gets_the_values_in_the_texts_order() -> None:
    rendered = render(UPDATE, SQLITE, ("b", "k"))
    assert rendered.text == "UPDATE t SET b=? WHERE t.a = ? AND t.b = ?"
    assert rendered.parameters({"k": 2, "b": 1}) == [1, 2, "fixed"]


def test_a_named_paramstyle_gets_a_mapping() -> None:
    rendered = render(UPDATE, POSTGRES, ("b", "k"))
    assert rendered.text == "UPDATE t SET b=%(b)s WHERE t.a = %(k)s AND t.b = %(b_1)s::VARCHAR"
    assert rendered.parameters({"k": 2, "b": 1}) == {"b_1": "fixed", "k": 2, "b": 1}


def test_the_new_rows_key_comes_from_returning_or_lastrowid_as_the_dialect_says() -> None:
    keys = ("ns", "status", "entry")
    postgres, sqlite = (
        render(log.insert(), POSTGRES, keys),
        render(log.insert(), SQLITE, keys),
    )
    assert postgres.returning and postgres.text.endswith("RETURNING flask_hooks_log.seq")
    assert not sqlite.returning


def test_each_statement_and_set_of_columns_is_rendered_once() -> None:
    statements = Statements(SQLITE)
    first = statements.get(UPDATE, ("b", "k"))
    assert statements.get(UPDATE, ("b", "k")) is first
    assert statements.get(UPDATE, ("a", "b", "k")).text.startswith("UPDATE t SET a=?, b=?")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    try:
        yield engine
    finally:
        engine.dispose()


def test_statements_run_in_the_connections_transaction(engine: sa.Engine) -> None:
    statements = Statements(engine.dialect)
    with engine.begin() as conn, Cursor(conn, statements) as cursor:
        cursor.run(sa.text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)"), {})
    with engine.connect() as conn, Cursor(conn, statements) as cursor:
        assert cursor.insert(t.insert(), {"b": "one"}) == 1
        assert cursor.run(UPDATE, {"b": "fixed", "k": 1}) == 0  # b is "one", not "fixed"
        assert cursor.row(sa.select(t.c.b).where(t.c.a == 1), {}) == ("one",)
        conn.rollback()
    with engine.connect() as conn, Cursor(conn, statements) as cursor:
        assert cursor.row(sa.select(t.c.b), {}) is None  # rolled back with the connection


def test_a_driver_error_is_unavailable_and_the_connection_stays(engine: sa.Engine) -> None:
    with engine.connect() as conn, Cursor(conn, Statements(engine.dialect)) as cursor:
        with pytest.raises(StoreUnavailable):
            cursor.row(sa.text("SELECT * FROM missing"), {})
        assert not conn.invalidated
        assert cursor.row(sa.text("SELECT 1"), {}) == (1,)


def test_a_lost_connection_is_unavailable_and_invalidated(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        with Cursor(conn, Statements(engine.dialect)) as cursor:
            driver = conn.connection.dbapi_connection
            assert driver is not None
            driver.close()  # the driver's connection is gone under SQLAlchemy
            with pytest.raises(StoreUnavailable):
                cursor.row(sa.text("SELECT 1"), {})
        assert conn.invalidated  # and SQLAlchemy's pool replaces it
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("dialect", ["mysql", "mariadb"])
def test_on_mysql_no_column_of_bodies_or_replies_ends_at_64_kib(dialect: str) -> None:
    # TEXT and BLOB hold 64 KiB there: a 1 MiB body, or a 64 KiB reply once encoded, was
    # refused (or cut, outside strict mode) on every retry.
    from sqlalchemy.dialects import mysql

    from flask_hooks.stores._sql_schema import deliveries as d

    engine = mysql.dialect() if dialect == "mysql" else mysql.mariadb.MariaDBDialect()
    columns = [d.c.body, d.c.reply, d.c.headers, d.c.handlers, d.c.attempts, log.c.entry]
    types = [column.type.compile(dialect=engine) for column in columns]
    assert types == ["LONGBLOB", *["LONGTEXT"] * 5]
    assert str(sa.schema.CreateTable(d).compile(dialect=engine))  # the table still renders
