"""Submitting jobs and receiving their callbacks, with no network.

``provider_api`` fakes Narada's and Noukai's job APIs: it captures the
job our form submits (with its ``callbackUrl``) and then plays the
provider's callback through the test client.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from example_app import db


def jobs(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        return db.jobs()


def test_index_page_lists_no_jobs_yet(app: Flask) -> None:
    page = app.test_client().get("/")
    assert page.status_code == 200
    assert b"No jobs yet." in page.data
    assert b"POST /webhooks/narada" in page.data


def test_narada_job_is_submitted_and_its_callback_completes_it(app: Flask, provider_api: Any) -> None:
    provider_api.narada()
    client = app.test_client()
    answer = client.post("/jobs", data={"provider": "narada", "prompt": "count the job listings"})
    assert answer.status_code == 303

    job = provider_api.last_job
    assert job.callback_url == "https://example.test/webhooks/narada"
    assert job.callback_headers == {"Authorization": "Bearer test-narada-token"}
    assert job.callback_secret == "test-narada-secret"
    assert job.request["prompt"] == "count the job listings"
    assert jobs(app)[0]["state"] == "running"
    assert jobs(app)[0]["remote_id"] == job.id

    callback = provider_api.complete(job, status="success", text="Found 1,234 listings.")
    assert callback.status_code == 200
    assert callback.json == {"status": "received"}
    stored = jobs(app)[0]
    assert (stored["state"], stored["result"]) == ("success", "Found 1,234 listings.")
    page = client.get("/")
    assert b"Found 1,234 listings." in page.data

    # The same callback again is acknowledged without running the handler twice.
    assert provider_api.complete(job, status="success", text="Found 1,234 listings.").json == {
        "status": "duplicate"
    }


def test_narada_callback_without_our_token_is_rejected(app: Flask, signed_delivery: Any) -> None:
    forged = signed_delivery("success", {"requestId": "req_x"}, receiver="narada")
    assert forged.send().status_code == 200
    headers = {**forged.headers, "Authorization": "Bearer guessed"}
    answer = app.test_client().post("/webhooks/narada", data=forged.body, headers=headers)
    assert answer.status_code == 401
    assert answer.json == {"status": "rejected", "reason": "invalid token"}


def test_noukai_job_with_a_truncated_callback_fetches_the_full_output(
    app: Flask, provider_api: Any
) -> None:
    provider_api.noukai(base_url=app.config["EXAMPLE_NOUKAI_API_URL"])
    client = app.test_client()
    client.post("/jobs", data={"provider": "noukai", "prompt": "summarise the report"})
    job = provider_api.last_job
    assert job.callback_url == "https://example.test/webhooks/noukai"

    callback = provider_api.complete(job, output={"summary": "all good"}, truncated=True)
    assert callback.status_code == 200, callback.data
    stored = jobs(app)[0]
    assert stored["state"] == "completed"
    assert '"summary": "all good"' in stored["result"]


def test_a_provider_that_refuses_the_job_marks_it_failed(app: Flask) -> None:
    import responses

    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, app.config["EXAMPLE_NARADA_DISPATCH_URL"], status=500)
        client.post("/jobs", data={"provider": "narada", "prompt": "anything"})
    assert jobs(app)[0]["state"] == "submit-failed"
    assert b"narada did not accept the job." in client.get("/").data


def test_the_form_needs_a_provider_and_a_prompt(app: Flask) -> None:
    client = app.test_client()
    answer = client.post("/jobs", data={"provider": "elsewhere", "prompt": "x"}, follow_redirects=True)
    assert b"Choose a provider and write a prompt." in answer.data
    assert jobs(app) == []
