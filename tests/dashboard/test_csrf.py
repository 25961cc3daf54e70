"""State changes need a POST with this session's current token; anything else is a 400."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from flask_hooks import Hooks
from flask_hooks.dashboard import Dashboard, csrf
from tests.conftest import generic_post
from tests.dashboard.pages import token
from tests.dashboard.shop import SECRET_KEY, Shop

FAILING = {"id": "ord_9", "type": "order.paid"}


@pytest.fixture
def failed(shop: Shop) -> Shop:
    shop.post(FAILING)
    shop.bug.fixed = True
    return shop


def post(client: Any, action: str, **form: str) -> Any:
    return client.post(f"/hooks/delivery/{action}", data={"receiver": "hooks", "id": "ord_9", **form})


def unchanged(shop: Shop) -> None:
    d = shop.hooks.inbox(shop.app).get("ord_9")
    assert d is not None and d.status == "failed"
    assert shop.bug.calls == [("ord_9", False)]


class _Stale(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - csrf.MAX_AGE - 60


def _session_value(client: Any) -> str:
    with client.session_transaction() as sess:
        return str(sess[csrf.SESSION_KEY])


@pytest.mark.parametrize("action", ["replay", "forget"])
def test_a_missing_token_is_a_400_and_nothing_changes(failed: Shop, action: str) -> None:
    client = failed.admin()
    answer = post(client, action)
    assert answer.status_code == 400
    assert b"nothing was changed" in answer.data
    unchanged(failed)


@pytest.mark.parametrize("action", ["replay", "forget"])
def test_wrong_tokens_are_400s(failed: Shop, action: str) -> None:
    client = failed.admin()
    page = client.get(f"/hooks/delivery/{action}?receiver=hooks&id=ord_9")
    good = token(page)
    value = _session_value(client)
    forged = [
        "",
        "garbage",
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # bad signature
        URLSafeTimedSerializer("another-key", salt=csrf.SALT).dumps(value),  # another app's key
        URLSafeTimedSerializer(SECRET_KEY, salt="other-purpose").dumps(value),  # another use of the key
        URLSafeTimedSerializer(SECRET_KEY, salt=csrf.SALT, signer=_Stale).dumps(value),  # expired
        URLSafeTimedSerializer(SECRET_KEY, salt=csrf.SALT).dumps("another-session"),
    ]
    for bad in forged:
        assert post(client, action, csrf_token=bad).status_code == 400, bad
    unchanged(failed)


def test_a_token_from_another_session_is_refused(failed: Shop) -> None:
    alice, mallory = failed.admin(), failed.admin()
    stolen = token(mallory.get("/hooks/delivery/replay?receiver=hooks&id=ord_9"))
    alice.get("/hooks/")  # Alice has a session value of her own
    token(alice.get("/hooks/delivery/replay?receiver=hooks&id=ord_9"))
    assert post(alice, "replay", csrf_token=stolen).status_code == 400
    unchanged(failed)


def test_a_session_without_a_token_value_is_refused(failed: Shop) -> None:
    client = failed.admin()
    value_less = URLSafeTimedSerializer(SECRET_KEY, salt=csrf.SALT).dumps("whatever")
    assert post(client, "replay", csrf_token=value_less).status_code == 400
    unchanged(failed)


def test_a_current_token_works_and_can_be_used_again(failed: Shop) -> None:
    client = failed.admin()
    good = token(client.get("/hooks/delivery/replay?receiver=hooks&id=ord_9"))
    assert post(client, "replay", csrf_token=good).status_code == 303
    assert post(client, "forget", csrf_token=good).status_code == 303  # the page's other forms too
    assert failed.bug.calls == [("ord_9", False), ("ord_9", True)]
    assert failed.hooks.inbox(failed.app).get("ord_9") is None


def test_tokens_survive_a_secret_key_rotation(failed: Shop) -> None:
    client = failed.admin()
    good = token(client.get("/hooks/delivery/replay?receiver=hooks&id=ord_9"))
    failed.app.secret_key = "the-new-key"
    failed.app.config["SECRET_KEY_FALLBACKS"] = [SECRET_KEY]
    assert post(client, "replay", csrf_token=good).status_code == 303


def test_a_key_removed_after_init_app_is_a_clear_error(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")
    app = make_app(hooks, SECRET_KEY=SECRET_KEY)
    Dashboard(app, allow=lambda: True)
    client = app.test_client()
    generic_post(client, {"id": "evt_1", "type": "order.created"})
    good = token(client.get("/hooks/delivery/forget?receiver=hooks&id=evt_1"))
    app.secret_key = None
    with pytest.raises(RuntimeError, match="needs SECRET_KEY"):  # a 500 outside TESTING
        client.get("/hooks/delivery/forget?receiver=hooks&id=evt_1")
    form = {"receiver": "hooks", "id": "evt_1", "csrf_token": good}
    with pytest.raises(RuntimeError, match="needs SECRET_KEY"):
        client.post("/hooks/delivery/forget", data=form)
    assert hooks.inbox(app).get("evt_1") is not None


@pytest.mark.parametrize("path", ["/hooks/", "/hooks/delivery/replay", "/hooks/delivery/forget"])
def test_options_is_answered_not_refused_as_a_form(failed: Shop, path: str) -> None:
    """OPTIONS changes nothing: Flask's own answer, with the methods allowed."""
    answer = failed.admin().options(path)
    assert answer.status_code == 200
    assert "GET" in answer.headers["Allow"]
    assert b"has expired" not in answer.data


@pytest.mark.parametrize("when", ["before Hooks", "between", "after Dashboard"])
def test_flask_wtf_csrf_protect_leaves_the_dashboard_to_its_own_tokens(
    make_app: Callable[..., Flask], when: str
) -> None:
    """Flask-WTF read the dashboard's ``csrf_token`` field as its own: every replay a 400."""
    from flask_wtf import CSRFProtect

    hooks, wtf = Hooks(store="memory://"), CSRFProtect()
    hooks.on("order.*")(lambda event: None)
    app = make_app(SECRET_KEY=SECRET_KEY)
    app.add_url_rule("/profile", "profile", lambda: "saved", methods=["POST"])
    steps = [hooks.init_app, lambda app: Dashboard(app, allow=lambda: True)]
    steps.insert({"before Hooks": 0, "between": 1, "after Dashboard": 2}[when], wtf.init_app)
    for step in steps:
        step(app)
    client = app.test_client()
    assert generic_post(client, {"id": "evt_1", "type": "order.created"}).status_code == 200
    good = token(client.get("/hooks/delivery/replay?receiver=hooks&id=evt_1"))
    form = {"receiver": "hooks", "id": "evt_1"}
    assert client.post("/hooks/delivery/replay", data=form).status_code == 400  # ours, still
    assert client.post("/hooks/delivery/replay", data={**form, "csrf_token": good}).status_code == 303
    assert client.post("/hooks/delivery/forget", data={**form, "csrf_token": good}).status_code == 303
    assert client.post("/profile").status_code == 400  # Flask-WTF still guards the app's own forms
