"""``make demo``: one delivery, the same again, and a forgery, over real HTTP.

Starts the example app on a free loopback port with the embedded SQLite
store in a fresh instance folder, posts three requests the way a sender
would, prints the answers and exits non-zero unless they are
200 received, 200 duplicate and 401. ``--serve`` prints the webhook
dashboard's URL and keeps the server (and the dashboard) up until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import make_server

from flask_hooks.core.providers.base import Outgoing
from flask_hooks.extension import get_state

from . import DEFAULTS, create_app
from .admin import login_closed
from .webhooks import hooks

EXPECTED = [(200, "received"), (200, "duplicate"), (401, "rejected")]


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 in a thread; shut it down on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw)


def login_hint(app: Flask, base: str) -> str:
    """How to get past the dashboard's login: the development password is shown, one of yours is not."""
    password = app.config["EXAMPLE_ADMIN_PASSWORD"]
    with app.app_context():
        closed = login_closed()
    if closed is not None:
        return f"the login is off: {closed}"
    if password == DEFAULTS["EXAMPLE_ADMIN_PASSWORD"]:
        return f"log in at {base}/login with the development password {password}"
    return f"log in at {base}/login with EXAMPLE_ADMIN_PASSWORD"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app.demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep serving after the three requests")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flask-hooks-demo-") as instance:
        app = create_app(instance_path=instance)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log between the answers
        receiver = hooks.receiver(app)
        delivery = Outgoing(
            type="resource.created",
            payload={"data": {"object": {"id": "res_42", "name": "demo"}}},
            id=f"evt_{uuid.uuid4().hex[:16]}",
            timestamp=int(receiver.now()),
        )
        signed = receiver.provider.sign(delivery, receiver.keys[0])
        forged = receiver.provider.sign(delivery, receiver.provider.keys(["not-the-secret"])[0])
        with serving(app) as base:
            url = base + receiver.settings.url
            print(f"flask-webhooks demo: {receiver.provider.name} receiver at POST {url}")
            print(f"store: {receiver.settings.store} in a temporary instance folder, removed at exit\n")
            steps = [
                ("1. signed delivery", signed),
                ("2. same delivery again (a sender retry)", signed),
                ("3. forged signature", forged),
            ]
            answers = []
            for label, request in steps:
                status, body = post(url, request.body, request.headers)
                answers.append((status, body.get("status")))
                print(f"{label:<42} {delivery.id}  ->  {status} {json.dumps(body)}")
            if args.serve:
                print(f"\ndashboard: {base}/hooks/ ({login_hint(app, base)})")
                print("serving until Ctrl-C", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    threading.Event().wait()
        with app.app_context():
            from . import db

            stored = [e for e in db.resource_events() if e["id"] == delivery.id]
        for store in get_state(app).stores.values():
            store.close()
        print(f"\nresource events stored for {delivery.id}: {len(stored)} (the handler ran once)")
    ok = answers == EXPECTED and len(stored) == 1
    print("OK: received, duplicate, rejected" if ok else f"UNEXPECTED: wanted {EXPECTED}")
    if not args.serve:
        print("(make demo-serve keeps the server up, with its dashboard)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
