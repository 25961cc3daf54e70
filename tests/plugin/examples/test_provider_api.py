"""``provider_api``: fake the sender's job API, then play its callback."""

import pytest
import requests
from flask import Flask, current_app

from flask_hooks import Event, Hooks
from flask_hooks.providers import Narada

narada_hooks = Hooks(name="narada", provider=Narada(token="callback-token", secret="callback-secret"))
noukai_hooks = Hooks(name="noukai", provider="noukai")


@narada_hooks.on("success", "error")
def task_finished(event: Event) -> None:
    current_app.config["RESULTS"][event.payload["requestId"]] = event.payload["response"]["text"]


@noukai_hooks.on("job.completed")
def job_finished(event: Event) -> None:
    payload = event.payload
    if payload.get("truncated"):  # the full output lives behind the jobs API
        url = f"https://api.noukai.ai/seq/flow/jobs/{payload['executionId']}"
        payload = requests.get(url, timeout=5).json()
    current_app.config["RESULTS"][payload["executionId"]] = payload["output"]


def start_task(prompt: str) -> str:
    """The application code under test: submit a task with a callback."""
    response = requests.post(
        "https://api.narada.ai/fast/v2/remote-dispatch",
        json={
            "prompt": prompt,
            "callbackUrl": "https://shop.example/webhooks/narada",
            "callbackHeaders": {"Authorization": "Bearer callback-token"},
            "callbackSecret": "callback-secret",
        },
        timeout=5,
    )
    return response.json()["requestId"]


def start_job(inputs: dict) -> str:
    response = requests.post(
        "https://api.noukai.ai/seq/flow/jobs",
        json={"inputs": inputs, "callbackUrl": "https://shop.example/webhooks/noukai"},
        timeout=5,
    )
    return response.json()["executionId"]


@pytest.fixture
def app(tmp_path):
    app = Flask("agents", instance_path=str(tmp_path))
    app.config.update(HOOKS_NOUKAI_SECRET="noukai-signing-secret", HOOKS_STORE="memory://", RESULTS={})
    narada_hooks.init_app(app)
    noukai_hooks.init_app(app)
    return app


def test_a_narada_task_calls_back(app, provider_api):
    provider_api.narada()
    request_id = start_task("count the open jobs")

    response = provider_api.complete(text="42 open jobs")

    assert response.status_code == 200
    assert provider_api.last_job.callback_secret == "callback-secret"
    assert app.config["RESULTS"] == {request_id: "42 open jobs"}


def test_a_truncated_noukai_result_is_fetched(app, provider_api):
    provider_api.noukai(base_url="https://api.noukai.ai/seq/flow")
    execution_id = start_job({"city": "Lyon"})

    response = provider_api.complete(output={"rows": 10_000}, truncated=True)

    assert response.status_code == 200
    assert app.config["RESULTS"] == {execution_id: {"rows": 10_000}}
