"""The app gunicorn serves in the reliability tests (``create_app()``).

Environment: ``HOOKS_STORE``, ``HOOKS_SECRET``, ``HOOKS_LEASE`` as usual;
``RELIABILITY_DIR`` is where side effects are recorded. Each handler run
appends ``<id> <pid>`` to ``started`` when it begins and to ``completed``
when its side effect is done, with ``O_APPEND`` so lines from concurrent
workers never interleave. An event of type ``job.block`` waits while the
file ``block`` exists (bounded), so a test can kill the worker mid-handler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Flask

from flask_hooks import Event, Hooks

BLOCK_LIMIT = 20.0


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def create_app() -> Flask:
    workdir = Path(os.environ["RELIABILITY_DIR"])
    app = Flask(__name__, instance_path=str(workdir / "instance"))
    app.config["HOOKS_LEASE"] = float(os.environ.get("HOOKS_LEASE", "60"))
    hooks = Hooks(app, store=os.environ["HOOKS_STORE"], secret=os.environ["HOOKS_SECRET"])

    @hooks.on("job")
    def job(event: Event) -> dict[str, str]:
        _append(workdir / "started", f"{event.id} {os.getpid()}")
        if event.type == "job.block":
            deadline = time.monotonic() + BLOCK_LIMIT
            while (workdir / "block").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        elif event.type == "job.slow":
            time.sleep(0.002)
        _append(workdir / "completed", f"{event.id} {os.getpid()}")
        return {"done": event.id}

    # Touch the store before gunicorn forks (--preload), so the workers must
    # reconnect on their own.
    hooks.receiver(app).store.deliveries(hooks.name, limit=1)
    return app
