"""Nothing outlives a test: signal receivers are disconnected, clocks restored."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.stores import SqliteStore
from tests.conftest import SECRET, generic_post


def test_signals_and_clock_are_restored_after_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from flask import Flask
        from flask_hooks import Hooks, signals
        from flask_hooks.core.clock import system_clock
        from flask_hooks.extension import get_state

        NAMES = ["delivery_received", "delivery_verified", "delivery_rejected",
                 "delivery_duplicate", "event_handled", "event_ignored", "handler_failed"]
        BEFORE = {}

        def counts():
            return {name: len(getattr(signals, name).receivers) for name in NAMES}

        @pytest.fixture(scope="module")
        def app():
            app = Flask("leaky")
            app.config.update(HOOKS_SECRET="s", HOOKS_STORE="memory://")
            Hooks(app)
            Hooks(app, name="other", secret="t")
            return app

        def test_0_before(app):
            BEFORE.update(counts())

        def test_1_uses_everything(app, webhook_clock, hook_signals, signed_delivery, webhook_sender):
            receivers = get_state(app).receivers.values()
            assert all(r.clock is webhook_clock for r in receivers)
            assert counts() != BEFORE  # the recorder is connected now
            delivery = signed_delivery("x.y", receiver="hooks")
            webhook_sender(schedule="archived").send(delivery, faults=[500])
            assert len(hook_signals) > 0

        def test_1b_webhook_sender_alone_freezes_every_receiver(app, webhook_sender, request):
            clock = request.getfixturevalue("webhook_clock")  # the one it installed
            assert all(r.clock is clock for r in get_state(app).receivers.values())

        def test_2_fails_midway(app, webhook_clock, hook_signals):
            webhook_clock.advance(10)
            raise RuntimeError("a failing test must not leak either")

        def test_3_after(app):
            assert counts() == BEFORE
            assert all(r.clock is system_clock for r in get_state(app).receivers.values())
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_2_fails_midway*"])


def test_loading_the_plugin_imports_no_flask() -> None:
    """Projects without a Flask app pay nothing for the installed plugin."""
    code = (
        "import sys, pytest_hooks.plugin;"
        " print(sorted(m for m in ('flask', 'flask_hooks') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def _one_app(instance: Path, i: int) -> None:
    """A test's app on the default store (SQLite in its instance folder), used once, dropped."""
    hooks = Hooks()
    hooks.on("*")(lambda event: None)
    app = Flask("per_test", instance_path=str(instance / str(i)))
    app.config.update(HOOKS_SECRET=SECRET)
    hooks.init_app(app)
    assert generic_post(app.test_client(), {"id": f"evt_{i}", "type": "a.b"}).status_code == 200


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts this process's files in /proc")
def test_an_app_per_test_on_the_sqlite_store_leaves_no_file_open(tmp_path: Path) -> None:
    """Each store held its two lock files until the process ended: a suite of some
    hundreds of tests ran out of file descriptors (256 by default on macOS)."""
    _one_app(tmp_path, 0)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for i in range(1, 21):
        _one_app(tmp_path, i)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_sqlite_store_closes_the_connections_it_drops(tmp_path: Path) -> None:
    """A thread's connections when it ends, every one when the store is collected: left to
    the garbage collector, each is closed with a ResourceWarning (Python 3.13), which
    ``pytest -W error`` turns into an error."""
    stores = [SqliteStore(str(tmp_path / "hooks.sqlite3"))]
    opened: list[sqlite3.Connection] = []

    def use() -> None:
        stores[0].deliveries("ns", limit=1)
        opened.append(stores[0]._local.cur.connection)

    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[0].execute("select 1")  # the thread ended
    use()
    opened[1].execute("select 1")  # this thread's, still in use
    stores.clear()
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened[1].execute("select 1")
