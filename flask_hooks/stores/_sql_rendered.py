"""The SQL store's statements as its driver takes them, run on the driver's own cursor.

For statements as short as the store's, SQLAlchemy's ``Connection.execute``
costs more CPU than the round trip: a cache key, an execution context and a
result object per call (even a ``text()`` costs about 1.8x what psycopg's
``cursor.execute`` does with the same SQL). So each statement is compiled
once per engine by the dialect's own compiler (``compile(dialect=...)``
gives the text in the driver's paramstyle and the order of positional
parameters) and then executed on a DBAPI cursor: that of a SQLAlchemy
:class:`~sqlalchemy.engine.Connection` (:class:`Cursor`), whose transaction
SQLAlchemy or Flask-SQLAlchemy's ``db.session`` begins and commits, or that
of a connection the store holds out of its own engine's pool (``_sql_held``).

The store's values are ``str``, ``float``, ``int``, ``bytes`` or ``None``,
which every DBAPI driver takes as they are, so no SQLAlchemy type processing
is needed. A driver error is a :class:`StoreUnavailable` (a 503), as
SQLAlchemy's errors are for the store, and a lost connection is invalidated,
so its pool replaces it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql.compiler import SQLCompiler

from ..core.errors import StoreUnavailable
from ._sql_engine import ConnectionLost

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIModule

Statement = sa.ClauseElement
#: An engine's ``schema_translate_map``: the schema each table's schema (None: no schema) is in.
Schemas = Mapping[str | None, str | None]


class Rendered(NamedTuple):
    """One statement, compiled for one dialect."""

    text: str
    #: The parameters' names in the order of the text's placeholders; None for named paramstyles.
    order: tuple[str, ...] | None
    #: The values the statement binds itself (``state = 'inflight'``), by their names in ``text``.
    fixed: Mapping[str, Any]
    #: Whether the text ends in ``RETURNING`` the new row's key (otherwise: ``cursor.lastrowid``).
    returning: bool

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.fixed:
            values = {**self.fixed, **values}
        if self.order is None:
            return values
        return [values[name] for name in self.order]


def render(
    statement: Statement, dialect: Dialect, keys: Sequence[str], schemas: Schemas | None = None
) -> Rendered:
    """``statement`` as ``dialect`` compiles it; an INSERT or UPDATE sets the columns in ``keys``;
    its tables in the schemas an engine's ``schema_translate_map`` puts them in."""
    translated: dict[str, Any] = {}
    if schemas:
        translated = {"schema_translate_map": schemas, "render_schema_translate": True}
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys), **translated))
    fixed = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    return Rendered(str(compiled), order, fixed, bool(compiled.effective_returning))


class Statements:
    """The statements of one engine, each rendered on its first use (then kept)."""

    def __init__(self, dialect: Dialect, schemas: Schemas | None = None) -> None:
        self.dialect = dialect
        #: The engine's ``schema_translate_map``, which SQLAlchemy applies only to what it executes.
        self.schemas = schemas
        self._rendered: dict[tuple[Statement, tuple[str, ...]], Rendered] = {}

    def get(self, statement: Statement, keys: tuple[str, ...]) -> Rendered:
        found = self._rendered.get((statement, keys))
        if found is None:  # two threads may both render it: the same text
            found = self._rendered[statement, keys] = render(statement, self.dialect, keys, self.schemas)
        return found


class DriverCursor:
    """A DBAPI cursor that runs statements rendered by :class:`Statements`.

    ``values`` are given as they would be to ``conn.execute(statement, values)``:
    the columns an INSERT or UPDATE sets, and the statement's bound parameters.
    Subclasses say whose connection it is and what a lost one means.
    """

    dialect: Dialect
    _statements: Statements
    _errors: type[DBAPIModule.Error]
    _cursor: DBAPICursor

    def begin(self) -> None:
        """The statements from here on are one transaction (statements before may each have
        committed on their own, on a connection in autocommit). Here: in one already."""

    def run(self, statement: Statement, values: Mapping[str, Any]) -> int:
        """Execute ``statement``; its rowcount."""
        try:
            self._execute(statement, values)
            return self._cursor.rowcount
        except self._errors as exc:
            raise self._unavailable(exc, self._cursor) from exc

    def row(self, statement: Statement, values: Mapping[str, Any]) -> Any:
        """The first row ``statement`` selects (a tuple), or None."""
        try:
            self._execute(statement, values)
            return self._cursor.fetchone()
        except self._errors as exc:
            raise self._unavailable(exc, self._cursor) from exc

    def insert(self, statement: Statement, values: Mapping[str, Any]) -> int:
        """INSERT one row; its integer primary key (0 if the driver does not say)."""
        try:
            if not self._execute(statement, values).returning:
                return int(self._cursor.lastrowid or 0)
            row = self._cursor.fetchone()
            return int(row[0]) if row else 0
        except self._errors as exc:
            raise self._unavailable(exc, self._cursor) from exc

    def _execute(self, statement: Statement, values: Mapping[str, Any]) -> Rendered:
        rendered = self._statements.get(statement, tuple(values))
        self._cursor.execute(rendered.text, rendered.parameters(values))
        return rendered

    def _unavailable(self, exc: DBAPIModule.Error, cursor: DBAPICursor | None) -> StoreUnavailable:
        """A 503 for a driver error (and what the loss of the connection takes)."""
        raise NotImplementedError


class Cursor(DriverCursor):
    """The DBAPI cursor of ``conn``, in ``conn``'s transaction (a context manager: closed after)."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self._statements = statements
        self._errors = conn.dialect.loaded_dbapi.Error
        try:
            self._cursor = conn.connection.cursor()
        except self._errors as exc:
            raise self._unavailable(exc, None) from exc

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(self._errors):  # the connection is gone, and the cursor with it
            self._cursor.close()

    def _unavailable(self, exc: DBAPIModule.Error, cursor: DBAPICursor | None) -> StoreUnavailable:
        """A 503; a lost connection is invalidated first, as SQLAlchemy does on its own path:
        with every connection its pool made before (the server restarted, they are lost too)."""
        conn = self.conn
        if conn.invalidated:
            return ConnectionLost()
        if conn.dialect.is_disconnect(exc, conn.connection, cursor):
            conn.engine.pool._invalidate(conn.connection, exc)  # what Connection does on a disconnect
            conn.invalidate(exc)
            return ConnectionLost()
        return StoreUnavailable()
