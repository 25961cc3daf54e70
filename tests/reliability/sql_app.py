"""The app gunicorn serves in the PostgreSQL proofs (``create_app()``).

Flask-SQLAlchemy on the database named by ``SQL_APP_URL``, which also holds
the store (``SqlStore(db)``). The ``order`` handler is ``atomic=True``: it
inserts a row keyed by the event id into ``handled``, which has no unique
constraint, so a handler's effects committed twice would show as two rows.
``HOOKS_SECRET``, ``HOOKS_LEASE`` and ``RELIABILITY_DIR`` as in
``receiver_app``: each run appends ``<id> <pid>`` to ``started`` once its row
is written (not committed), and an ``order.block`` event then waits while the
file ``block`` exists (bounded), so a test can kill or freeze the worker in
the middle of the transaction.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from flask_hooks import Event, Hooks
from flask_hooks.stores.sql import SqlStore
from tests.reliability.receiver_app import BLOCK_LIMIT, _append


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Handled(db.Model):  # type: ignore[name-defined,misc]
    """One row per handler run that committed."""

    __tablename__ = "handled"
    n: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(index=True)
    pid: Mapped[int]


def create_app() -> Flask:
    workdir = Path(os.environ["RELIABILITY_DIR"])
    app = Flask(__name__, instance_path=str(workdir / "instance"))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ["SQL_APP_URL"],
        # What the docs recommend for SqlStore(db): survive a restarted server, bound every wait.
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_pre_ping": True,
            "pool_timeout": 5,
            "connect_args": {
                "connect_timeout": 2,
                # A worker frozen inside a transaction must not hold its locks for ever.
                "options": "-c lock_timeout=2000 -c statement_timeout=30000"
                " -c idle_in_transaction_session_timeout=10000",
            },
        },
        HOOKS_LEASE=float(os.environ.get("HOOKS_LEASE", "60")),
    )
    db.init_app(app)
    hooks = Hooks(app, store=SqlStore(db), secret=os.environ["HOOKS_SECRET"])

    @hooks.on("order", atomic=True)
    def book(event: Event) -> dict[str, str]:
        db.session.add(Handled(event=event.id, pid=os.getpid()))
        db.session.flush()  # the row is written, inside the transaction the store commits
        _append(workdir / "started", f"{event.id} {os.getpid()}")
        if event.type == "order.block":
            deadline = time.monotonic() + BLOCK_LIMIT
            while (workdir / "block").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"booked": event.id}

    # Create the tables and touch the store before gunicorn forks (--preload), so
    # the workers must drop the connections they inherit.
    with app.app_context():
        db.create_all()
        hooks.receiver(app).store.deliveries(hooks.name, limit=1)
    return app
