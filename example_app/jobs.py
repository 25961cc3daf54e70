"""Outbound calls: submit a job with a ``callbackUrl``, fetch a full result.

Narada (its webhooks guide): ``POST .../remote-dispatch`` with
``callbackUrl``, ``callbackHeaders`` (our bearer token) and
``callbackSecret``; the answer names the ``requestId`` its callback will
carry. Noukai (its "Receiving Webhooks" guide): ``POST .../jobs`` with
``callbackUrl``; a callback whose payload says ``truncated`` is completed
by :func:`flask_hooks.noukai.fetch_full_output`.
"""

from __future__ import annotations

from typing import Any

import requests
from flask import current_app

TIMEOUT = 10


class SubmitError(Exception):
    """The provider refused the job or could not be reached."""


def _post(url: str, *, json: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    try:
        response = requests.post(url, json=json, headers=headers, timeout=TIMEOUT)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise SubmitError(f"{url}: {exc}") from None
    if not isinstance(data, dict):
        raise SubmitError(f"{url}: unexpected answer")
    return data


def submit_narada(prompt: str, callback_url: str) -> str:
    """Dispatch a Narada task; returns its ``requestId``."""
    config = current_app.config
    data = _post(
        config["EXAMPLE_NARADA_DISPATCH_URL"],
        json={
            "prompt": prompt,
            "callbackUrl": callback_url,
            "callbackHeaders": {"Authorization": f"Bearer {config['EXAMPLE_NARADA_TOKEN']}"},
            "callbackSecret": config["EXAMPLE_NARADA_SECRET"],
        },
        headers={"x-api-key": config["EXAMPLE_NARADA_API_KEY"]},
    )
    request_id = data.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        raise SubmitError("Narada's answer has no requestId")
    return request_id


def submit_noukai(prompt: str, callback_url: str) -> str:
    """Start a Noukai job; returns its ``executionId``."""
    config = current_app.config
    data = _post(
        config["EXAMPLE_NOUKAI_API_URL"].rstrip("/") + "/jobs",
        json={"input": {"prompt": prompt}, "callbackUrl": callback_url},
        headers={"Authorization": f"Bearer {config['EXAMPLE_NOUKAI_API_KEY']}"},
    )
    execution_id = data.get("executionId") or data.get("id")
    if not isinstance(execution_id, str) or not execution_id:
        raise SubmitError("Noukai's answer has no executionId")
    return execution_id
