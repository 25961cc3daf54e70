"""Who gets in: ``allow`` is required and asked per request; every answer is locked down."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks import ConfigError, Hooks
from flask_hooks.dashboard import Dashboard
from flask_hooks.dashboard.extension import CONTENT_SECURITY_POLICY
from tests.dashboard.pages import token
from tests.dashboard.shop import NEW, OLD, SECRET_KEY, Shop

ORDER = {"id": "ord_1", "type": "order.created"}

ROUTES = [
    ("GET", "/hooks/"),
    ("GET", "/hooks/?status=failed&type=order.*"),
    ("GET", "/hooks/delivery?receiver=hooks&id=ord_1"),
    ("GET", "/hooks/delivery/replay?receiver=hooks&id=ord_1"),
    ("GET", "/hooks/delivery/forget?receiver=hooks&id=ord_1"),
    ("POST", "/hooks/delivery/replay"),
    ("POST", "/hooks/delivery/forget"),
    ("GET", "/hooks/static/dashboard.css"),
]


def test_allow_is_required() -> None:
    with pytest.raises(ConfigError, match="needs 'allow'"):
        Dashboard()
    with pytest.raises(ConfigError, match="must be a function"):
        Dashboard(allow=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [None, "", ..., 42])
def test_a_secret_key_is_required_at_init_app(tmp_path: Path, key: Any) -> None:
    # A placeholder (``...``) passed, then the first confirmation page was a 500.
    app = Flask("no_key", instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = key
    dashboard = Dashboard(allow=lambda: True)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        dashboard.init_app(app)
    assert "hooks_dashboard" not in app.extensions


def test_init_app_refuses_a_second_dashboard(shop: Shop) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        Dashboard(shop.app, allow=lambda: True)


def test_init_app_with_a_blueprint_says_it_takes_the_app() -> None:
    """It raised AttributeError: 'Blueprint' object has no attribute 'extensions'."""
    from flask import Blueprint

    with pytest.raises(TypeError, match=r"^init_app\(\) takes a Flask app, got Blueprint; .* registered on"):
        Dashboard(allow=lambda: True).init_app(Blueprint("admin", __name__))  # type: ignore[arg-type]


def test_the_root_is_no_prefix() -> None:
    with pytest.raises(ConfigError, match="url_prefix"):
        Dashboard(url_prefix="/", allow=lambda: True)


def test_off_unless_created(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")
    app = make_app(hooks, SECRET_KEY=SECRET_KEY)
    assert app.test_client().get("/hooks/").status_code == 404
    assert not any(rule.rule.startswith("/hooks") for rule in app.url_map.iter_rules())


def test_a_factory_app_and_another_prefix(make_app: Callable[..., Flask]) -> None:
    dashboard = Dashboard(url_prefix="/ops/webhooks/", allow=lambda: True)
    hooks = Hooks(store="memory://")
    app = make_app(hooks, SECRET_KEY=SECRET_KEY)
    dashboard.init_app(app)
    client = app.test_client()
    assert client.get("/ops/webhooks/").status_code == 200
    assert client.get("/hooks/").status_code == 404


def test_an_app_without_receivers_shows_an_empty_dashboard(tmp_path: Path) -> None:
    app = Flask("bare", instance_path=str(tmp_path))
    app.config["SECRET_KEY"] = SECRET_KEY
    Dashboard(app, allow=lambda: True)
    page = app.test_client().get("/hooks/")
    assert page.status_code == 200
    assert b"No receivers are set up" in page.data


@pytest.mark.parametrize("host", ["shop.example", "admin.shop.example:8443"])
def test_an_app_that_matches_hosts_serves_the_pages_on_every_host(
    shop_factory: Callable[..., Shop], host: str
) -> None:
    # Flask gives a blueprint's rules no host: with host_matching=True every page was a 404.
    shop = shop_factory(host_matching=True)
    shop.bug.fixed = False
    assert shop.post({"id": "ord_7", "type": "order.paid"}, **{"Host": host}).status_code == 500
    base = f"http://{host}"
    client = shop.app.test_client()
    with client.session_transaction(base_url=base) as sess:  # the session cookie is the host's
        sess["admin"] = True
    index = client.get(f"{base}/hooks/")
    assert index.status_code == 200
    assert 'href="/hooks/delivery?receiver=hooks&amp;id=ord_7"' in index.get_data(as_text=True)
    assert client.get(f"{base}/hooks/static/dashboard.css").status_code == 200
    page = client.get(f"{base}/hooks/delivery?receiver=hooks&id=ord_7")
    assert b'href="/hooks/delivery/replay?receiver=hooks&amp;id=ord_7"' in page.data
    confirm = client.get(f"{base}/hooks/delivery/replay?receiver=hooks&id=ord_7")
    assert b'action="/hooks/delivery/replay"' in confirm.data
    shop.bug.fixed = True
    done = client.post(
        f"{base}/hooks/delivery/replay",
        data={"receiver": "hooks", "id": "ord_7", "csrf_token": token(confirm)},
    )
    assert done.status_code == 303
    assert done.location.startswith("/hooks/delivery?receiver=hooks&id=ord_7&done=replayed&result=received")
    assert b'id="status">received<' in client.get(base + done.location).data
    assert client.get("http://shop.example/login").status_code == 200  # the app's own host rules still work


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_refused_requests_get_403_and_change_nothing(shop: Shop, method: str, path: str) -> None:
    shop.post(ORDER)
    client = shop.app.test_client()
    answer = client.open(path, method=method, data={"receiver": "hooks", "id": "ord_1"})
    assert answer.status_code == 403
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert b"ord_1" not in answer.data
    assert shop.hooks.inbox(shop.app).get("ord_1") is not None


def test_allow_is_asked_on_every_request_and_only_true_lets_in(shop: Shop) -> None:
    client = shop.admin()
    assert client.get("/hooks/").status_code == 200
    assert client.get("/hooks/").status_code == 200
    assert shop.allowed == [True, True]
    with client.session_transaction() as sess:
        sess["admin"] = "yes"  # truthy is not enough
    assert client.get("/hooks/").status_code == 403
    with client.session_transaction() as sess:
        sess["admin"] = True
    assert client.get("/hooks/").status_code == 200


def test_allow_that_raises_is_a_500_not_a_way_in(make_app: Callable[..., Flask]) -> None:
    def allow() -> bool:
        raise LookupError("no user loaded")

    app = make_app(Hooks(store="memory://"), SECRET_KEY=SECRET_KEY)
    app.testing = False
    Dashboard(app, allow=allow)
    answer = app.test_client().get("/hooks/")
    assert answer.status_code == 500
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/",
        "/hooks/delivery?receiver=hooks&id=ord_1",
        "/hooks/delivery?receiver=hooks&id=missing",
        "/hooks/?status=bogus",
        "/hooks/static/dashboard.css",
        "/hooks/no-such-page",
        "/hooks",
    ],
)
def test_every_answer_is_uncached_and_under_a_strict_policy(shop: Shop, path: str) -> None:
    shop.post(ORDER)
    answer = shop.admin().get(path)
    assert answer.headers["Cache-Control"] == "no-store"
    policy = answer.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert "script-src" not in policy and "unsafe" not in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_outside_the_prefix_keep_their_own_headers(shop: Shop) -> None:
    answer = shop.app.test_client().get("/login")
    assert "Content-Security-Policy" not in answer.headers


def test_redirects_after_a_post_carry_the_headers(shop: Shop) -> None:
    shop.post(ORDER)
    client = shop.admin()
    form = client.get("/hooks/delivery/replay?receiver=hooks&id=ord_1")
    done = client.post(
        "/hooks/delivery/replay", data={"receiver": "hooks", "id": "ord_1", "csrf_token": token(form)}
    )
    assert done.status_code == 303
    assert done.headers["Cache-Control"] == "no-store"


def test_get_never_changes_anything(shop: Shop) -> None:
    shop.post({"id": "ord_2", "type": "order.paid"})  # fails: the bug is not fixed
    client = shop.admin()
    before = shop.hooks.inbox(shop.app).get("ord_2")
    for path in (
        "/hooks/delivery/replay?receiver=hooks&id=ord_2",
        "/hooks/delivery/forget?receiver=hooks&id=ord_2",
        "/hooks/delivery?receiver=hooks&id=ord_2&done=replayed&result=received",
    ):
        assert client.get(path).status_code == 200
    assert shop.hooks.inbox(shop.app).get("ord_2") == before
    assert shop.bug.calls == [("ord_2", False)]
    assert client.put("/hooks/delivery/replay").status_code == 405


def test_no_secret_or_credential_is_ever_rendered(shop: Shop) -> None:
    shop.post(ORDER, Authorization="Bearer sk_live_leaked", Cookie="session=stolen")
    shop.post({"id": "ord_old", "type": "order.created"}, secret=OLD)
    client = shop.admin()
    pages = [
        client.get("/hooks/"),
        client.get("/hooks/delivery?receiver=hooks&id=ord_1"),
        client.get("/hooks/delivery/replay?receiver=hooks&id=ord_1"),
        client.get("/hooks/delivery/forget?receiver=hooks&id=ord_1"),
    ]
    for page in pages:
        html = page.get_data(as_text=True)
        for secret in (NEW, OLD, "billing-secret", SECRET_KEY, "sk_live_leaked", "stolen"):
            assert secret not in html
    assert "[redacted]" in pages[1].get_data(as_text=True)


def test_the_receivers_secret_quoted_anywhere_in_a_delivery_is_blanked(shop: Shop) -> None:
    # A sender echoing its configuration: the secret under names no provider declares.
    payload = {
        "id": "ord_echo",
        "type": "order.created",
        "config": {"webhook_secret": NEW, "url": f"https://shop.example/hook?key={OLD}"},
        NEW: "as a key",
        "list": [f"prefix-{NEW}-suffix"],
    }
    body = json.dumps(payload).replace("whsec", "\\u0077hsec").encode()  # spelled with an escape too
    assert shop.post(body, **{"X-Webhook-Secret": NEW, "X-Echo": f"token={OLD}"}).status_code == 200
    client = shop.admin()
    for path in ("/hooks/", *(f"/hooks/delivery{a}?receiver=hooks&id=ord_echo" for a in ("", "/replay"))):
        html = client.get(path).get_data(as_text=True)
        for secret in (NEW, OLD, "new-secret", "old-secret"):
            assert secret not in html, (path, secret)
    html = client.get("/hooks/delivery?receiver=hooks&id=ord_echo").get_data(as_text=True)
    assert "<code>X-Webhook-Secret</code></th><td><code>[redacted]</code>" in html
    assert "token=[redacted]" in html and "prefix-[redacted]-suffix" in html
    assert "&#34;[redacted]&#34;: &#34;as a key&#34;" in html


def test_a_body_credential_echoed_under_another_name_is_blanked() -> None:
    from flask_hooks.dashboard.text import payload_text
    from flask_hooks.inbox import Delivery, hidden

    body = b'{"secret": "s3cr3t-value", "task": {"callbackSecret": "s3cr3t-value", "n": 1}}'
    d = Delivery("d", "t", "received", body, (), 0.0, 0, {}, (), "narada", ("secret",))
    shown = payload_text(d, hidden(d, ())).text
    assert "s3cr3t" not in shown and shown.count("[redacted]") == 2 and '"n": 1' in shown
    assert payload_text(d, hidden(d, ["1"])).text.count('"n": "[redacted]"') == 1
