"""The core is a core: it imports the standard library only, and a receiver
built on it without Flask answers the response table like the Flask view."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from flask_hooks import Event, Hooks, Retry
from flask_hooks.core.pipeline import Pipeline, ReceiverConfig
from flask_hooks.core.providers import get_provider
from flask_hooks.core.routing import Router
from flask_hooks.stores.memory import MemoryStore
from tests.conftest import SECRET
from tests.helpers import ManualClock
from tests.wsgi_receiver import make_app as make_wsgi_app

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"flask", "werkzeug", "jinja2", "click", "redis", "celery", "rq", "fcntl", "itsdangerous"}


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_whole_core_loads_only_the_standard_library() -> None:
    loaded = run_python(
        "import importlib, pkgutil, sys\n"
        "import flask_hooks.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'flask_hooks.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(','.join(sorted({n.split('.')[0] for n in sys.modules})))"
    ).split(",")
    assert FORBIDDEN.isdisjoint(loaded), sorted(FORBIDDEN.intersection(loaded))


def test_flask_hooks_imports_without_fcntl() -> None:
    """As on Windows: the package, the extension and the non-SQLite stores work."""
    out = run_python(
        "import sys\n"
        "sys.modules['fcntl'] = None  # any import of it raises ImportError\n"
        "import flask_hooks\n"
        "from flask_hooks import Hooks, Event, ConfigError\n"
        "from flask_hooks.stores import *\n"
        "from flask import Flask\n"
        "app = Flask('win')\n"
        "Hooks(app, secret='s', store='memory://')\n"
        "print(sorted(app.extensions['hooks'].receivers))"
    )
    assert out == "['hooks']"


# One response table, two transports -------------------------------------------------------


def sign(body: bytes) -> dict[str, str]:
    return {"X-Webhook-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


def handlers(router_add: Callable[..., Any]) -> None:
    router_add(lambda event: {"booked": event.id}, ("payment.booked",))
    router_add(lambda event: None, ("resource",))

    def failing(event: Event) -> None:
        raise ValueError("secret database password in the message")

    def later(event: Event) -> None:
        raise Retry(after=30)

    router_add(failing, ("broken",))
    router_add(later, ("later",))


@pytest.fixture(params=["flask", "wsgi"])
def transport(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask]
) -> tuple[Client, MemoryStore, str]:
    store, clock = MemoryStore(), ManualClock()
    if request.param == "flask":
        hooks = Hooks(store=store, clock=clock, max_body=1024)
        handlers(lambda f, patterns: hooks.on(*patterns)(f))
        app = make_app(hooks)
        return Client(app), store, hooks.receiver(app).ns
    router = Router()
    handlers(lambda f, patterns: router.add(f, patterns))
    provider = get_provider("generic")
    config = ReceiverConfig(
        name="hooks",
        provider=provider,
        keys=provider.keys((SECRET,)),
        store=store,
        router=router,
        dedupe_ttl=86400,
        lease=60,
        tolerance=(300, 300),
        clock=clock,
        ns="plain:hooks",
    )
    return Client(make_wsgi_app(Pipeline(config), max_body=1024)), store, "plain:hooks"


def post(client: Client, payload: Any, *, signed: bool = True) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = sign(body) if signed else {"X-Webhook-Signature": "00" * 32}
    return client.post("/webhooks", data=body, headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("payload", "signed", "status", "body"),
    [
        ({"id": "e1", "type": "resource.created"}, True, 200, {"status": "received"}),
        ({"id": "e2", "type": "payment.booked"}, True, 200, {"booked": "e2"}),
        ({"id": "e3", "type": "nobody.listens"}, True, 200, {"status": "ignored"}),
        ({"id": "e4", "type": "broken"}, True, 500, {"status": "error", "reason": "handler failed"}),
        ({"id": "e5", "type": "later"}, True, 503, {"status": "retry", "reason": "retry later"}),
        (
            {"id": "e6", "type": "resource.created"},
            False,
            401,
            {"status": "rejected", "reason": "signature mismatch"},
        ),
        (b"not json", True, 400, {"status": "invalid", "reason": "body is not JSON"}),
        ({"type": "resource.created"}, True, 400, {"status": "invalid", "reason": "missing id"}),
        (b"x" * 1025, True, 413, {"status": "rejected", "reason": "body too large"}),
    ],
)
def test_the_response_table(
    transport: tuple[Client, MemoryStore, str], payload: Any, signed: bool, status: int, body: Any
) -> None:
    client, _, _ = transport
    response = post(client, payload, signed=signed)
    assert (response.status_code, response.get_json()) == (status, body)
    if status == 503:
        assert response.headers["Retry-After"] == "30"


def test_duplicates_in_flight_and_methods(transport: tuple[Client, MemoryStore, str]) -> None:
    client, store, ns = transport
    first = post(client, {"id": "e1", "type": "payment.booked"})
    again = post(client, {"id": "e1", "type": "payment.booked"})
    assert first.get_json() == again.get_json() == {"booked": "e1"}
    store.claim(ns, "busy", now=ManualClock()(), lease=60, ttl=60)
    busy = post(client, {"id": "busy", "type": "resource.created"})
    assert (busy.status_code, busy.headers["Retry-After"]) == (409, "60")
    assert client.get("/webhooks").status_code == 405


def test_the_core_reads_plain_and_repeated_headers_as_the_flask_receiver_does(
    make_app: Callable[..., Flask],
) -> None:
    """A plain dict with lower-cased names (what ASGI hands over) is read case-insensitively;
    a repeated signature header is joined as WSGI servers join it, so a good signature
    beside a bad one is refused by both layers, not accepted by one of them."""
    from flask_hooks.core.event import Headers

    hooks = Hooks(store="memory://")
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    pipeline = hooks.receiver(app).pipeline
    body = json.dumps({"id": "e1", "type": "a.b"}).encode()
    good, bad = sign(body)["X-Webhook-Signature"], "00" * 32
    lower = pipeline.process({"x-webhook-signature": good}, body, run=lambda route, event: None)
    assert lower.kind == "received"
    both = [("X-Webhook-Signature", good), ("X-Webhook-Signature", bad)]
    assert Headers(both).get("x-webhook-signature") == f"{good},{bad}"
    assert pipeline.process(Headers(both), body, run=lambda route, event: None).kind == "rejected"
    assert app.test_client().post("/webhooks", data=body, headers=both).status_code == 401
