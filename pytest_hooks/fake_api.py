"""``provider_api``: a fake of the senders' job APIs, on one ``responses`` mock.

Your code submits a job with a ``callbackUrl`` through ``requests``; the
fake captures it and answers with a job id. ``complete(job, ...)`` then
plays the sender: it posts the callback, authenticated the way that
sender does, to the callback URL's path through the app's test client.

* Narada (its webhook documentation): ``POST https://api.narada.ai/fast/v2/remote-dispatch``
  with ``callbackUrl``, ``callbackHeaders`` (echoed on the callback) and
  ``callbackSecret`` (echoed as the body field ``secret``).
* Noukai (its "Receiving Webhooks" guide): ``POST {base_url}/jobs`` with ``callbackUrl``; the
  callback is signed (``X-Noukai-Signature``) with the receiving
  receiver's key by the ``noukai`` provider. ``truncated=True`` leaves the
  output out of the callback and serves it at ``GET {base_url}/jobs/{id}``.

Any other outbound call made through ``requests`` fails the test.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import responses

if TYPE_CHECKING:
    from flask import Flask
    from requests import PreparedRequest
    from werkzeug.test import TestResponse

    from flask_hooks import Receiver

NARADA_DISPATCH = "https://api.narada.ai/fast/v2/remote-dispatch"
#: Noukai's guide names only ``/seq/.../jobs``; pass your own ``base_url``.
NOUKAI_BASE = "https://api.noukai.ai/seq/flow"


@dataclasses.dataclass
class Job:
    """A job your code submitted: the request body and where to call back."""

    api: str
    id: str
    request: dict[str, Any]
    headers: dict[str, str]
    base_url: str = ""
    result: dict[str, Any] | None = None

    @property
    def callback_url(self) -> str | None:
        """The request's ``callbackUrl``: where :meth:`ProviderAPI.complete` posts."""
        return self.request.get("callbackUrl")

    @property
    def callback_headers(self) -> dict[str, str]:
        """The request's ``callbackHeaders`` (Narada echoes them on the callback)."""
        return dict(self.request.get("callbackHeaders") or {})

    @property
    def callback_secret(self) -> str | None:
        """The request's ``callbackSecret`` (Narada echoes it as the body's ``secret``)."""
        return self.request.get("callbackSecret")


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


class ProviderAPI:
    """Owns one ``responses.RequestsMock`` (``.mock``) for one test."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.jobs: list[Job] = []
        self._apis: dict[str, str] = {}
        self._ids = itertools.count(1)

    # Setting up the fakes ---------------------------------------------------

    def narada(self) -> ProviderAPI:
        """Serve Narada's remote-dispatch endpoint."""
        if "narada" not in self._apis:
            self._apis["narada"] = NARADA_DISPATCH
            self.mock.add_callback(responses.POST, NARADA_DISPATCH, callback=self._submit_narada)
        return self

    def noukai(self, base_url: str = NOUKAI_BASE) -> ProviderAPI:
        """Serve Noukai's async jobs endpoint (and its results) under ``base_url``."""
        base = base_url.rstrip("/")
        if self._apis.get("noukai") not in (None, base):
            raise ValueError(f"provider_api already fakes Noukai at {self._apis['noukai']}")
        if "noukai" not in self._apis:
            self._apis["noukai"] = base
            self.mock.add_callback(responses.POST, f"{base}/jobs", callback=self._submit_noukai(base))
            pattern = re.compile(re.escape(base) + r"/jobs/(?P<id>[^/?#]+)$")
            self.mock.add_callback(responses.GET, pattern, callback=self._get_noukai)
        return self

    def _capture(self, api: str, request: PreparedRequest, prefix: str, base: str = "") -> Job:
        raw = request.body or b"{}"
        try:
            body = json.loads(raw) if isinstance(raw, (str, bytes)) else None
        except (ValueError, TypeError):
            body = None
        if not isinstance(body, dict):
            raise AssertionError(f"{api}: the job request body is not a JSON object: {request.body!r}")
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()}
        job = Job(api, f"{prefix}{next(self._ids):06d}", body, headers, base)
        self.jobs.append(job)
        return job

    def _submit_narada(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        job = self._capture("narada", request, "req_")
        body = {"requestId": job.id, "status": "pending"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _submit_noukai(self, base: str) -> Any:
        def submit(request: PreparedRequest) -> tuple[int, dict[str, str], str]:
            job = self._capture("noukai", request, "exec_", base)
            body = {"executionId": job.id, "status": "queued"}
            return 202, {"Content-Type": "application/json"}, json.dumps(body)

        return submit

    def _get_noukai(self, request: PreparedRequest) -> tuple[int, dict[str, str], str]:
        job_id = (request.url or "").rstrip("/").rsplit("/", 1)[-1]
        for job in self.jobs:
            if job.api == "noukai" and job.id == job_id:
                result = job.result or {"executionId": job.id, "status": "running"}
                return 200, {"Content-Type": "application/json"}, json.dumps(result)
        return 404, {"Content-Type": "application/json"}, json.dumps({"error": "job not found"})

    # Reading ---------------------------------------------------------------

    @property
    def last_job(self) -> Job:
        """The job submitted last; an ``AssertionError`` when there is none."""
        __tracebackhide__ = True
        if not self.jobs:
            apis = ", ".join(self._apis) or "none set up: call provider_api.narada() or .noukai()"
            raise AssertionError(f"no job was submitted to the fake provider API ({apis})")
        return self.jobs[-1]

    # Completing --------------------------------------------------------------

    def complete(self, job: Job | None = None, /, **fields: Any) -> TestResponse:
        """Play the sender's callback for ``job`` (default: the last one)."""
        __tracebackhide__ = True
        job = job or self.last_job
        if not job.callback_url:
            raise AssertionError(f"{job.api} job {job.id} was submitted without a callbackUrl: {job.request}")
        if job.api == "narada":
            body, headers = self._narada_callback(job, **fields)
        else:
            body, headers = self._noukai_callback(job, **fields)
        return self.app.test_client().post(self._path(job), data=body, headers=headers)

    def _path(self, job: Job) -> str:
        parts = urlsplit(job.callback_url or "")
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _narada_callback(
        self,
        job: Job,
        *,
        status: str = "success",
        text: str = "",
        structured_output: Any = None,
        usage: dict[str, int] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        response: dict[str, Any] = {"text": text}
        if structured_output is not None:
            response["structuredOutput"] = structured_output
        # The receiving receiver's time (``webhook_clock``), as the provider's own signer stamps it.
        receiver = self._find_receiver(self._path(job).split("?", 1)[0])
        stamp = _iso(receiver.now() if receiver is not None else time.time())
        payload = {
            "requestId": job.id,
            "secret": job.callback_secret,
            "status": status,
            "browserWindowId": job.request.get("browserWindowId"),
            "response": response,
            "createdAt": stamp,
            "completedAt": stamp,
            "usage": usage,
        }
        headers = {"Content-Type": "application/json", **job.callback_headers}
        return json.dumps(payload).encode("utf-8"), headers

    def _noukai_callback(
        self,
        job: Job,
        *,
        output: Any = None,
        status: str = "completed",
        type: str = "job.completed",
        truncated: bool = False,
        delivery_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        __tracebackhide__ = True
        from flask_hooks.core.providers import Outgoing, get_provider

        job.result = {"executionId": job.id, "status": status, "output": output}
        payload: dict[str, Any] = {"executionId": job.id, "status": status, "truncated": truncated}
        if not truncated:
            payload["output"] = output
        receiver = self._receiver_at(self._path(job).split("?", 1)[0])
        provider = receiver.provider if receiver.provider.name == "noukai" else get_provider("noukai")
        outgoing = Outgoing(type, payload, delivery_id or str(uuid.uuid4()), int(receiver.now()))
        signed = provider.sign(outgoing, receiver.keys[0])
        return signed.body, signed.headers

    def _receivers(self) -> list[Receiver]:
        from flask_hooks.extension import get_state

        return list(get_state(self.app).receivers.values())

    def _find_receiver(self, path: str) -> Receiver | None:
        return next((r for r in self._receivers() if r.settings.url.rstrip("/") == path.rstrip("/")), None)

    def _receiver_at(self, path: str) -> Receiver:
        __tracebackhide__ = True
        receiver = self._find_receiver(path)
        if receiver is not None:
            return receiver
        urls = ", ".join(r.settings.url for r in self._receivers()) or "none"
        raise AssertionError(f"the callbackUrl path {path!r} is no receiver's URL (receivers at: {urls})")

    # Teardown ----------------------------------------------------------------

    def problems(self) -> list[str]:
        """Calls that matched nothing, even if the code under test swallowed the error."""
        out = [
            f"provider_api.{api}() was set up but no job was submitted to {url}"
            for api, url in self._apis.items()
            if not any(job.api == api for job in self.jobs)
        ]
        for call in self.mock.calls:
            request, response = call.request, call.response
            if isinstance(response, AssertionError):  # a faked API refused it, and said why
                out.append(f"{request.method} {request.url} was refused: {response}")
            elif isinstance(response, Exception):
                out.append(f"unexpected outbound call {request.method} {request.url}")
        return out
