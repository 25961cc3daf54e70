"""The app's three receivers and their handlers.

The ``Hooks`` objects hold only handlers; URLs, providers and secrets
come from the app config at ``init_app`` (see :func:`example_app.create_app`),
so the same module serves every app the factory builds.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from flask import current_app

from flask_hooks import Event, Hooks, Retry
from flask_hooks.noukai import fetch_full_output, is_truncated

from . import db

#: Generic HMAC deliveries on ``/webhooks`` (``HOOKS_SECRET``).
hooks = Hooks()
#: Narada task callbacks on ``/webhooks/narada`` (``HOOKS_NARADA_PROVIDER``).
narada = Hooks(name="narada")
#: Noukai job callbacks on ``/webhooks/noukai`` (``HOOKS_NOUKAI_SECRET``).
noukai = Hooks(name="noukai")


@hooks.on("resource.*")
def record_resource(event: Event) -> None:
    """Keep each resource event once; ``secret_index`` shows which secret signed it."""
    obj = event.payload.get("data", {}).get("object", {}) if isinstance(event.payload, dict) else {}
    object_id = str(obj.get("id", "")) if isinstance(obj, dict) else ""
    db.add_resource_event(event.id, event.type, object_id, event.secret_index, event.received_at)


@narada.on("success", "error", "input-required")
def narada_finished(event: Event) -> None:
    """A Narada task ended (or needs input): store its state and text."""
    response = event.payload.get("response") or {}
    text = response.get("text", "") if isinstance(response, dict) else ""
    structured = response.get("structuredOutput") if isinstance(response, dict) else None
    if structured is not None:
        text = f"{text}\n{json.dumps(structured, indent=2)}".strip()
    db.update_job("narada", str(event.payload["requestId"]), event.type, str(text))


@noukai.on("*")
def noukai_finished(event: Event) -> None:
    """A Noukai job event; a truncated payload is completed from the jobs API."""
    payload: dict[str, Any] = event.payload
    execution_id = str(payload.get("executionId") or "")
    if not execution_id:
        return
    if is_truncated(event):
        config = current_app.config
        try:
            full = fetch_full_output(
                event, base_url=config["EXAMPLE_NOUKAI_API_URL"], api_key=config["EXAMPLE_NOUKAI_API_KEY"]
            )
        except (requests.RequestException, ValueError):
            # Not acknowledged: Noukai retries later and this handler runs again.
            raise Retry(after=60) from None
        payload = {**payload, "output": full}
    state = str(payload.get("status") or event.type.rsplit(".", 1)[-1])
    output = payload.get("output", "")
    result = output if isinstance(output, str) else json.dumps(output, indent=2)
    db.update_job("noukai", execution_id, state, result)
