"""``provider_api``: captured jobs, signed callbacks, the jobs endpoint, misuse."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.providers import Narada, Noukai
from pytest_hooks.fake_api import NARADA_DISPATCH, ProviderAPI

BASE = "https://jobs.noukai.test/seq/my-flow"


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def app(make_app: Callable[..., Flask], events: list[Event]) -> Flask:
    narada = Hooks(name="narada", provider=Narada(token="tok", secret="sec"), store="memory://")
    noukai = Hooks(name="noukai", provider=Noukai(), secret="noukai-secret", store="memory://")
    narada.on("*")(events.append)
    noukai.on("*")(events.append)
    return make_app(narada, noukai)


def submit_narada(**extra: Any) -> dict[str, Any]:
    body = {"prompt": "p", "callbackUrl": "https://me.example/webhooks/narada?src=narada", **extra}
    response = requests.post(NARADA_DISPATCH, json=body, timeout=5)
    response.raise_for_status()
    return dict(response.json())


def test_narada_echoes_headers_and_secret(provider_api: ProviderAPI, events: list[Event]) -> None:
    provider_api.narada()
    job_id = submit_narada(callbackHeaders={"Authorization": "Bearer tok"}, callbackSecret="sec")["requestId"]

    response = provider_api.complete(provider_api.last_job, status="error", text="boom", usage={"credits": 1})

    assert response.status_code == 200
    job = provider_api.jobs[0]
    assert (job.id, job.api, job.callback_headers, job.callback_secret) == (
        job_id,
        "narada",
        {"Authorization": "Bearer tok"},
        "sec",
    )
    (event,) = events
    assert event.type == "error" and event.id == f"{job_id}:error"
    assert event.payload["secret"] == "sec" and event.payload["response"] == {"text": "boom"}
    assert event.headers["Authorization"] == "Bearer tok"


def test_narada_times_are_the_receivers_clock(
    provider_api: ProviderAPI, events: list[Event], webhook_clock: Any
) -> None:
    """As the provider's own signer stamps them: a test that moves the clock sees them move."""
    provider_api.narada()
    submit_narada(callbackHeaders={"Authorization": "Bearer tok"}, callbackSecret="sec")
    webhook_clock.advance(3 * 86400)

    assert provider_api.complete().status_code == 200

    stamp = datetime.datetime.fromtimestamp(webhook_clock.now(), datetime.timezone.utc).isoformat()
    (event,) = events
    assert (event.payload["createdAt"], event.payload["completedAt"]) == (stamp, stamp)


def test_narada_without_the_token_is_rejected(provider_api: ProviderAPI, events: list[Event]) -> None:
    provider_api.narada()
    submit_narada(callbackSecret="sec")  # the app forgot callbackHeaders

    assert provider_api.complete().status_code == 401
    assert events == []


def test_noukai_callback_is_signed_and_results_are_served(
    provider_api: ProviderAPI, events: list[Event]
) -> None:
    provider_api.noukai(base_url=BASE)
    submitted = requests.post(
        f"{BASE}/jobs", json={"callbackUrl": "https://me.example/webhooks/noukai"}, timeout=5
    )
    execution_id = submitted.json()["executionId"]
    assert submitted.status_code == 202
    assert requests.get(f"{BASE}/jobs/{execution_id}", timeout=5).json()["status"] == "running"

    response = provider_api.complete(output=[1, 2, 3], truncated=True, delivery_id="d-1")

    assert response.status_code == 200
    (event,) = events
    assert event.id == "d-1" and event.type == "job.completed"
    assert event.payload == {
        "type": "job.completed",
        "executionId": execution_id,
        "status": "completed",
        "truncated": True,
    }
    assert "v1=" in event.headers["X-Noukai-Signature"]
    full = requests.get(f"{BASE}/jobs/{execution_id}", timeout=5).json()
    assert full == {"executionId": execution_id, "status": "completed", "output": [1, 2, 3]}
    assert requests.get(f"{BASE}/jobs/unknown", timeout=5).status_code == 404


def test_complete_explains_misuse(provider_api: ProviderAPI) -> None:
    with pytest.raises(AssertionError, match="no job was submitted to the fake provider API"):
        provider_api.complete()
    provider_api.narada()
    requests.post(NARADA_DISPATCH, json={"prompt": "no callback"}, timeout=5)
    with pytest.raises(AssertionError, match="submitted without a callbackUrl"):
        provider_api.complete()
    provider_api.noukai(base_url=BASE)
    requests.post(f"{BASE}/jobs", json={"callbackUrl": "https://me.example/elsewhere"}, timeout=5)
    with pytest.raises(AssertionError, match="'/elsewhere' is no receiver's URL"):
        provider_api.complete()
    with pytest.raises(ValueError, match="already fakes Noukai"):
        provider_api.noukai(base_url="https://other.example")


def test_one_mock_is_owned(provider_api: ProviderAPI) -> None:
    provider_api.narada().narada()  # idempotent: still one registration
    assert len(provider_api.mock.registered()) == 1
    submit_narada()
