"""flask_hooks.noukai.fetch_full_output against a ``responses`` mock we own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from flask import Flask

from flask_hooks import Event, Hooks, PayloadError
from flask_hooks.core.providers import Outgoing
from flask_hooks.noukai import execution_id, fetch_full_output, is_truncated

BASE = "https://api.noukai.test/seq/my-flow"


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_truncated_output_is_fetched_from_the_jobs_api(api: responses.RequestsMock) -> None:
    api.get(f"{BASE}/jobs/ex_42", json={"executionId": "ex_42", "output": "x" * 10_000})
    payload = {"type": "job.completed", "executionId": "ex_42", "truncated": True, "output": "x" * 10}
    full = fetch_full_output(payload, base_url=BASE + "/", api_key="key_1")
    assert full == "x" * 10_000  # the output, not the whole job
    [call] = api.calls
    assert call.request.headers["Authorization"] == "Bearer key_1"


def test_nested_payload_flags_and_a_session_of_our_own(api: responses.RequestsMock) -> None:
    api.get(f"{BASE}/jobs/ex%2F1", json={"ok": True})
    payload = {"event": "job.completed", "payload": {"executionId": "ex/1", "truncated": True}}
    with requests.Session() as session:
        result = fetch_full_output(
            payload, base_url=BASE, api_key="k", session=session, auth_header="X-Api-Key", auth_scheme=""
        )
    assert result == {"ok": True}
    assert api.calls[0].request.headers["X-Api-Key"] == "k"


def test_untruncated_payload_needs_no_request(api: responses.RequestsMock) -> None:
    payload = {"type": "job.completed", "executionId": "ex_1", "truncated": False, "output": "all"}
    assert fetch_full_output(payload, base_url=BASE, api_key="k") == "all"
    no_output = {"type": "job.completed", "executionId": "ex_1"}
    assert fetch_full_output(no_output, base_url=BASE, api_key="k") is no_output
    assert not is_truncated(payload)
    assert not is_truncated({"truncated": "true"})  # only a JSON true counts
    assert len(api.calls) == 0


def test_missing_execution_id_and_http_errors_raise(api: responses.RequestsMock) -> None:
    with pytest.raises(PayloadError):
        execution_id({"truncated": True})
    api.get(f"{BASE}/jobs/ex_500", status=500)
    with pytest.raises(requests.HTTPError):
        fetch_full_output({"truncated": True, "executionId": "ex_500"}, base_url=BASE, api_key="k")


def test_a_failed_fetch_fails_the_handler_so_noukai_retries(
    make_app: Callable[..., Flask], api: responses.RequestsMock
) -> None:
    hooks = Hooks(provider="noukai", store="memory://")
    outputs: list[object] = []

    @hooks.on("job")
    def on_job(event: Event) -> None:
        outputs.append(fetch_full_output(event, base_url=BASE, api_key="k"))

    app = make_app(hooks)
    receiver = hooks.receiver(app)
    payload = {"executionId": "ex_7", "truncated": True}
    request = receiver.provider.sign(Outgoing("job.completed", payload, "dlv-7", 0), receiver.keys[0])
    client = app.test_client()
    api.get(f"{BASE}/jobs/ex_7", status=503)
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 500
    api.replace(responses.GET, f"{BASE}/jobs/ex_7", json={"output": "full"})
    assert client.post("/webhooks", data=request.body, headers=request.headers).status_code == 200
    assert outputs == ["full"]
