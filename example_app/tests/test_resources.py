"""The generic ``resource.*`` receiver on ``/webhooks``, driven by pytest_hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from example_app import create_app, db
from example_app.tests.conftest import CONFIG
from example_app.webhooks import hooks


def stored(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        return db.resource_events()


def test_signed_delivery_is_stored_once(app: Flask, signed_delivery: Any) -> None:
    delivery = signed_delivery("resource.created", {"data": {"object": {"id": "res_1"}}}, receiver=hooks)
    assert delivery.send().json == {"status": "received"}
    assert delivery.resend().json == {"status": "duplicate"}
    assert [(e["id"], e["type"], e["object_id"]) for e in stored(app)] == [
        (delivery.id, "resource.created", "res_1")
    ]
    page = app.test_client().get("/")
    assert delivery.id.encode() in page.data


def test_tampered_delivery_is_rejected_and_not_stored(app: Flask, signed_delivery: Any) -> None:
    delivery = signed_delivery("resource.updated", {"data": {"object": {"id": "res_2"}}}, receiver=hooks)
    answer = delivery.tampered().send()
    assert answer.status_code == 401
    assert stored(app) == []


def test_other_event_types_are_acknowledged_as_ignored(app: Flask, signed_delivery: Any) -> None:
    assert signed_delivery("invoice.paid", receiver=hooks).send().json == {"status": "ignored"}
    assert stored(app) == []


def test_lost_responses_and_outages_still_store_the_event_once(
    app: Flask, webhook_sender: Any, signed_delivery: Any
) -> None:
    """The archived sender ("Working with Webhooks") retries at 60 s and 300 s; the handler runs once."""
    delivery = signed_delivery("resource.created", {"data": {"object": {"id": "res_3"}}}, receiver=hooks)
    report = webhook_sender(schedule="archived").send(delivery, faults=["lost", 503])
    assert report.delivered, str(report)
    assert report.offsets == [0, 60, 300]
    assert report.statuses[1:] == [503, 200]
    assert sum(report.handler_calls.values()) == 1
    assert len(stored(app)) == 1


def test_rotation_reports_which_secret_signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``"new,old"`` in the environment becomes a rotation list; the page shows the index."""
    monkeypatch.setenv("EXAMPLE_WEBHOOK_SECRET", "new-secret,old-secret")
    config = {k: v for k, v in CONFIG.items() if k != "EXAMPLE_WEBHOOK_SECRET"}
    app = create_app(config, instance_path=str(tmp_path))
    receiver = app.extensions["hooks"].receivers["hooks"]
    assert len(receiver.keys) == 2
    from pytest_hooks.delivery import SignedDelivery

    old = SignedDelivery.forge(app, receiver, "resource.created", {}, secret_index=1)
    new = SignedDelivery.forge(app, receiver, "resource.created", {}, secret_index=0)
    assert old.send().status_code == new.send().status_code == 200
    by_id = {e["id"]: e["secret_index"] for e in stored(app)}
    assert by_id == {old.id: 1, new.id: 0}
