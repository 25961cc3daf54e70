"""Hostile input through the real WSGI stack: a clear 4xx, never a handler call."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from tests.conftest import generic_signature

BODY = json.dumps({"id": "evt_1", "type": "resource.created"}).encode()


@pytest.fixture
def calls() -> list[Event]:
    return []


@pytest.fixture
def app(make_app: Callable[..., Flask], calls: list[Event]) -> Flask:
    hooks = Hooks(store="memory://")
    hooks.on("*")(calls.append)
    return make_app(hooks)


@pytest.mark.parametrize(
    "value",
    [
        "\u00ff\u00fe\u00fd",
        "sha256=" + "\u00e9" * 64,
        "\x00\x01\x02",
        "a" * 20000,
        "sha256=sha256=" + "0" * 64,
        " , ; = ",
    ],
)
def test_junk_signature_headers_are_401(app: Flask, calls: list[Event], value: str) -> None:
    response = app.test_client().post("/webhooks", data=BODY, headers={"X-Webhook-Signature": value})
    assert response.status_code == 401
    assert calls == []


def test_junk_in_other_headers_does_not_matter(app: Flask, calls: list[Event]) -> None:
    body = json.dumps({"type": "resource.created"}).encode()  # no payload id: the header is used
    response = app.test_client().post(
        "/webhooks",
        data=body,
        headers={
            "X-Webhook-Signature": generic_signature(body),
            "X-Webhook-Id": "\u00ff" * 10,
            "Content-Type": "text/plain; charset=\u00e9",
            "X-Junk": "\x7f" * 100,
        },
    )
    assert response.status_code == 200
    assert calls[0].id == "\u00ff" * 10


def test_oversized_id_is_400(app: Flask, calls: list[Event]) -> None:
    body = json.dumps({"id": "x" * 1000, "type": "a"}).encode()
    response = app.test_client().post(
        "/webhooks", data=body, headers={"X-Webhook-Signature": generic_signature(body)}
    )
    assert response.status_code == 400
    assert calls == []


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00" * 100, "\u2028".encode(), b'{"id": "a", "type": "b"' + b"]" * 100000, b"[" * 100000],
)
def test_signed_garbage_is_400(app: Flask, calls: list[Event], body: bytes) -> None:
    response = app.test_client().post(
        "/webhooks", data=body, headers={"X-Webhook-Signature": generic_signature(body)}
    )
    assert response.status_code == 400
    assert calls == []


def test_form_bodies_are_verified_as_raw_bytes(app: Flask, calls: list[Event]) -> None:
    body = b"id=evt_1&type=resource.created"
    response = app.test_client().post(
        "/webhooks",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Webhook-Signature": generic_signature(body)},
    )
    assert response.status_code == 400  # verified, but not JSON
    assert response.get_json()["reason"] == "body is not JSON"


def test_a_replay_under_a_new_id_header_is_a_duplicate(app: Flask, calls: list[Event]) -> None:
    client = app.test_client()
    for delivery in ("dlv_1", "dlv_replayed"):
        response = client.post(
            "/webhooks",
            data=BODY,
            headers={"X-Webhook-Signature": generic_signature(BODY), "X-Webhook-Id": delivery},
        )
        assert response.status_code == 200
    assert response.get_json() == {"status": "duplicate"}
    assert [e.id for e in calls] == ["evt_1"]


OVERFLOW = "body has a number too large for a float (infinity is not JSON)"


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b'{"id":"\xed\xa0\x80","type":"a"}', {}, "body is not UTF-8"),
        (b'{"id":1e400,"type":"a"}', {}, OVERFLOW),
        (b'{"id":"evt_1","type":"a","data":{"n":[1,-1e400]}}', {}, OVERFLOW),
        (b'{"type":"a"}', {"X-Webhook-Id": "x" * 8000}, "id too long (over 512 characters)"),
    ],
)
def test_signed_but_unusable_ids_get_a_400_saying_why(
    app: Flask, calls: list[Event], body: bytes, headers: dict[str, str], reason: str
) -> None:
    response = app.test_client().post(
        "/webhooks", data=body, headers={"X-Webhook-Signature": generic_signature(body), **headers}
    )
    assert response.status_code == 400
    assert response.get_json()["reason"] == reason
    assert calls == []
