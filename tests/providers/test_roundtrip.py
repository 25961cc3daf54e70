"""Every preset through a real Flask app: sign -> post the exact bytes ->
handler called with the right id and type -> duplicate -> forged rejected."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.core.providers import FlowStep, Narada, Noukai, Outgoing

from .samples import NOW, Case, body_changed, case_id, cases

CASES = cases()


def build(make_app: Callable[..., Flask], case: Case, calls: list[Event]) -> tuple[Flask, Hooks]:
    hooks = Hooks(provider=case.provider, secret=case.secrets or None, store="memory://", clock=lambda: NOW)

    @hooks.on("*")
    def record(event: Event) -> Any:
        calls.append(event)
        return None

    # Only the case's own secrets: Narada carries its credentials itself.
    app = make_app()
    app.config["HOOKS_SECRET"] = None
    hooks.init_app(app)
    return app, hooks


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_round_trip(make_app: Callable[..., Flask], case: Case) -> None:
    calls: list[Event] = []
    app, hooks = build(make_app, case, calls)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(case.outgoing, receiver.keys[0])
    client = app.test_client()

    first = client.post("/webhooks", data=request.body, headers=request.headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert [(e.id, e.type, e.secret_index) for e in calls] == [(case.id, case.type, 0)]
    assert calls[0].body == request.body
    assert calls[0].provider == case.name

    again = client.post("/webhooks", data=request.body, headers=request.headers)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate"}
    assert len(calls) == 1

    rejected = case.provider.rejection_status
    if case.body_signed:
        forged = client.post("/webhooks", data=body_changed(request.body), headers=request.headers)
        assert forged.status_code == rejected
        assert forged.get_json()["status"] == "rejected"
    wrong_keys = case.provider.keys(["whsec_d3Jvbmcta2V5LXdyb25nLWtleQ=="])
    if isinstance(case.provider, Narada):
        wrong_keys = Narada(token="tok_wrong", secret="wrong").keys([])
    other = case.provider.sign(Outgoing(case.outgoing.type, {"amount": 1}, "other", NOW), wrong_keys[0])
    forged = client.post("/webhooks", data=other.body, headers=other.headers)
    assert forged.status_code == rejected
    assert len(calls) == 1


@pytest.mark.parametrize(
    "case", [c for c in CASES if len(c.secrets) > 1 or isinstance(c.provider, Narada)], ids=case_id
)
def test_rotation_reports_the_older_secret(make_app: Callable[..., Flask], case: Case) -> None:
    calls: list[Event] = []
    app, hooks = build(make_app, case, calls)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(case.outgoing, receiver.keys[1])
    response = app.test_client().post("/webhooks", data=request.body, headers=request.headers)
    assert response.status_code == 200
    assert calls[0].secret_index == 1


TIMESTAMPED = ("stripe", "standard-webhooks", "svix", "slack", "itsdangerous")


@pytest.mark.parametrize("case", [c for c in CASES if c.name in TIMESTAMPED], ids=case_id)
def test_timestamp_tolerance_past_and_future(make_app: Callable[..., Flask], case: Case) -> None:
    calls: list[Event] = []
    app, hooks = build(make_app, case, calls)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(case.outgoing, receiver.keys[0])
    client = app.test_client()
    receiver.clock = lambda: NOW + 301
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 401
    receiver.clock = lambda: NOW - 301
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 401
    assert calls == []
    receiver.clock = lambda: NOW + 299
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 200
    assert calls[0].timestamp == NOW


def test_tolerance_tuple_sets_past_and_future_separately(make_app: Callable[..., Flask]) -> None:
    case = next(c for c in CASES if c.name == "stripe")
    hooks = Hooks(provider="stripe", secret=case.secrets, store="memory://", tolerance=(600, 0))
    app = make_app(hooks)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(case.outgoing, receiver.keys[0])
    client = app.test_client()
    receiver.clock = lambda: NOW - 1
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 401
    receiver.clock = lambda: NOW + 599
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 200


def test_flowstep_answers_with_the_step_result_and_400_on_a_bad_signature(
    make_app: Callable[..., Flask],
) -> None:
    hooks = Hooks(provider="flowstep", secret="wsk_key", store="memory://")

    @hooks.on("step_c")
    def step_c(event: Event) -> dict[str, Any]:
        return {"exit_code": "success", "data": {"myOutput": event.payload["data"]["in"]}}

    app = make_app(hooks)
    receiver = hooks.receiver(app)
    request = FlowStep().sign(Outgoing("step_c", {"in": "value"}, "mqr_9", NOW), receiver.keys[0])
    client = app.test_client()
    response = client.post("/webhooks", data=request.body, headers=request.headers)
    assert response.status_code == 200
    assert response.get_json() == {"exit_code": "success", "data": {"myOutput": "value"}}
    duplicate = client.post("/webhooks", data=request.body, headers=request.headers)
    assert duplicate.get_json() == {"exit_code": "success", "data": {"myOutput": "value"}}
    body = json.loads(request.body)
    body["signature"] = "0" * 64
    bad = client.post("/webhooks", data=json.dumps(body), headers=request.headers)
    assert bad.status_code == 400
    assert bad.get_json()["status"] == "rejected"


def test_slack_url_verification_is_answered_without_a_handler(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    hooks = Hooks(provider="slack", secret="slack-secret", store="memory://", clock=lambda: NOW)
    hooks.on("*")(calls.append)
    app = make_app(hooks)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(
        Outgoing("url_verification", {"challenge": "3eZbrw1a"}, "x", NOW), receiver.keys[0]
    )
    response = app.test_client().post("/webhooks", data=request.body, headers=request.headers)
    assert response.status_code == 200
    assert response.get_json() == {"challenge": "3eZbrw1a"}
    assert calls == []


def test_slack_retry_num_becomes_the_attempt(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    hooks = Hooks(provider="slack", secret="slack-secret", store="memory://", clock=lambda: NOW)
    hooks.on("*")(calls.append)
    app = make_app(hooks)
    receiver = hooks.receiver(app)
    request = receiver.provider.sign(Outgoing("message", {"text": "hi"}, "Ev9", NOW), receiver.keys[0])
    headers = {**request.headers, "X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    response = app.test_client().post("/webhooks", data=request.body, headers=headers)
    assert response.status_code == 200
    assert calls[0].attempt == 3


def test_noukai_rotation_window_old_and_new_pods(make_app: Callable[..., Flask]) -> None:
    """During rotation v1 carries the new secret and v2 the previous one."""
    provider = Noukai()
    out = Outgoing("job.completed", {"executionId": "ex_1"}, "0b6f-uuid", NOW)
    new, old = provider.keys(["nk_new", "nk_old"])
    request = provider.sign(out, new, previous=old)
    assert request.headers["X-Noukai-Signature"].startswith("v1=")
    assert ",v2=" in request.headers["X-Noukai-Signature"]
    for secrets in (["nk_new"], ["nk_old"], ["nk_new", "nk_old"]):
        calls: list[Event] = []
        hooks = Hooks(provider=Noukai(), secret=secrets, store="memory://")
        hooks.on("job")(calls.append)
        app = make_app(hooks)
        response = app.test_client().post("/webhooks", data=request.body, headers=request.headers)
        assert response.status_code == 200
        assert (calls[0].id, calls[0].type, calls[0].secret_index) == ("0b6f-uuid", "job.completed", 0)
    stranger = Hooks(provider=Noukai(), secret="nk_other", store="memory://")
    app = make_app(stranger)
    response = app.test_client().post("/webhooks", data=request.body, headers=request.headers)
    assert response.status_code == 401


def test_github_ping_has_no_action_and_issues_gets_every_action(make_app: Callable[..., Flask]) -> None:
    calls: list[Event] = []
    hooks = Hooks(provider="github", secret="gh", store="memory://")
    hooks.on("issues", "ping")(calls.append)
    app = make_app(hooks)
    keys = hooks.receiver(app).keys
    client = app.test_client()
    for type, id in (("issues.opened", "g1"), ("issues.closed", "g2"), ("ping", "g3")):
        request = hooks.receiver(app).provider.sign(Outgoing(type, {"zen": "x"}, id, NOW), keys[0])
        assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 200
    assert [e.type for e in calls] == ["issues.opened", "issues.closed", "ping"]


def _github_post(client: Any, body: bytes, delivery: str, secret: bytes = b"gh") -> Any:
    """Headers as GitHub sends them, the signature computed without flask_hooks."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return client.post("/webhooks", data=body, headers=headers)


def test_github_form_content_type_is_read_from_its_payload_field(make_app: Callable[..., Flask]) -> None:
    # content_type "form" (the REST API's default) posts payload=<url-encoded JSON>, signed as sent.
    calls: list[Event] = []
    hooks = Hooks(provider="github", secret="gh", store="memory://")
    hooks.on("issues")(calls.append)
    client = make_app(hooks).test_client()
    event = {"action": "opened", "issue": {"number": 7, "title": "a + b & c ü"}}
    body = urllib.parse.urlencode({"payload": json.dumps(event)}).encode("ascii")

    response = _github_post(client, body, "g-form")
    assert (response.status_code, response.get_json()) == (200, {"status": "received"})
    assert [(e.id, e.type, e.payload, e.body) for e in calls] == [("g-form", "issues.opened", event, body)]
    assert _github_post(client, body, "g-form").get_json() == {"status": "duplicate"}
    assert _github_post(client, body, "g-other", secret=b"someone-else").status_code == 401

    for bad in (b"payload=", b"payload=%7B%7D&x=1", b"payload=%FF", b"payload=%5B1%5D", b"payload=\xc3\xbc"):
        response = _github_post(client, bad, "g-bad")
        assert response.status_code == 400, bad
    assert len(calls) == 1
