"""The example's operator login and the webhook dashboard behind it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from example_app import create_app
from example_app.tests.conftest import CONFIG
from example_app.webhooks import hooks

PASSWORD = "test-admin-password"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    # The memory store: these tests are about the pages, not the store.
    config = {**CONFIG, "EXAMPLE_ADMIN_PASSWORD": PASSWORD, "HOOKS_STORE": "memory://"}
    return create_app(config, instance_path=str(tmp_path / "instance"))


def login(client: Any, password: str = PASSWORD) -> Any:
    return client.post("/login", data={"password": password})


def test_the_dashboard_needs_the_login(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/hooks/").status_code == 403
    assert login(client, "guess").status_code == 401
    assert client.get("/hooks/").status_code == 403
    answer = login(client)
    assert answer.status_code == 303 and answer.location == "/hooks/"
    page = client.get("/hooks/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    for name in ("hooks", "narada", "noukai"):
        assert f'<option value="{name}"' in page.get_data(as_text=True)
    assert client.post("/logout").status_code == 303
    assert client.get("/hooks/").status_code == 403


def test_an_empty_password_turns_the_login_off(tmp_path: Path) -> None:
    app = create_app(
        {**CONFIG, "EXAMPLE_ADMIN_PASSWORD": "", "HOOKS_STORE": "memory://"}, instance_path=str(tmp_path)
    )
    client = app.test_client()
    assert b"The login is off" in client.get("/login").data
    assert login(client, "").status_code == 401
    assert client.get("/hooks/").status_code == 403


@pytest.mark.parametrize(
    "keys",
    [
        {"SECRET_KEY": "dev-only-session-key"},
        {"SECRET_KEY": "ours", "SECRET_KEY_FALLBACKS": ["dev-only-session-key"]},
    ],
    ids=["the-key", "a-fallback"],
)
def test_an_own_password_with_the_published_session_key_keeps_the_login_off(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    # A session cookie signed with the published key opened the dashboard without the password.
    from flask.sessions import SecureCookieSessionInterface

    from example_app.admin import DEV_SECRET_KEY

    config = {**CONFIG, "EXAMPLE_ADMIN_PASSWORD": PASSWORD, **keys}
    app = create_app({**config, "HOOKS_STORE": "memory://"}, instance_path=str(tmp_path))
    client = app.test_client()
    assert b"set SECRET_KEY as well" in client.get("/login").data
    assert login(client).status_code == 401
    forger = Flask("forger")
    forger.secret_key = DEV_SECRET_KEY
    forged = SecureCookieSessionInterface().get_signing_serializer(forger).dumps({"admin": True})  # type: ignore[union-attr]
    client.set_cookie("session", forged)
    assert client.get("/hooks/").status_code == 403


def test_a_received_resource_event_shows_on_the_dashboard(app: Flask, signed_delivery: Any) -> None:
    delivery = signed_delivery("resource.created", {"data": {"object": {"id": "res_1"}}}, receiver=hooks)
    assert delivery.send().json == {"status": "received"}
    client = app.test_client()
    login(client)
    listing = client.get("/hooks/").get_data(as_text=True)
    assert delivery.id in listing
    page = client.get(f"/hooks/delivery?receiver=hooks&id={delivery.id}")
    assert page.status_code == 200
    assert b"example_app.webhooks.record_resource" in page.data or b"record_resource" in page.data
    confirm = client.get(f"/hooks/delivery/replay?receiver=hooks&id={delivery.id}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.get_data(as_text=True))
    assert token is not None
    done = client.post(
        "/hooks/delivery/replay",
        data={"receiver": "hooks", "id": delivery.id, "csrf_token": token.group(1)},
    )
    assert done.status_code == 303
    assert b"Replayed: the delivery is now received." in client.get(done.location).data


def test_the_jobs_page_links_to_the_dashboard(app: Flask) -> None:
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'href="/hooks/"' in page and 'href="/login"' in page
