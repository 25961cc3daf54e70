"""The real entry point: ``flask hooks send`` from a shell against ``flask run``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.cli.conftest import FlaskRun

APP = '''
from flask import Flask
from flask_hooks import Hooks

hooks = Hooks(secret="run-secret")

@hooks.on("resource.*")
def sync(event):
    return {"synced": event.id}

app = Flask(__name__)
hooks.init_app(app)
'''


@pytest.mark.slow
def test_send_to_flask_run_then_read_the_log(flask_run: Callable[[str], FlaskRun]) -> None:
    server = flask_run(APP)
    sent = server.flask("hooks", "send", "resource.created", "--url", server.url, "--id", "evt_run",
                        "--data", '{"data": {"object": {"id": "r1"}}}')
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == '200  {"synced":"evt_run"}'

    again = server.flask("hooks", "send", "resource.created", "--url", server.url, "--id", "evt_run")
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1] == '200  {"synced":"evt_run"}'

    log = server.flask("hooks", "deliveries")
    assert log.returncode == 0, log.stderr
    rows = [line.split() for line in log.stdout.splitlines()[1:]]
    assert [row[3:6] for row in rows] == [["evt_run", "resource.created", "duplicate"],
                                          ["evt_run", "resource.created", "received"]]

    missing = server.flask("hooks", "send", "resource.created", "--url", server.url, "--data", "@nope.json")
    assert missing.returncode == 2
    assert "cannot read nope.json" in missing.stderr
    assert missing.stdout == ""
