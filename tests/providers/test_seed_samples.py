"""The provider documents' own samples, used as test vectors end to end.

* Narada Cloud's webhook page: its four example payloads, with the ``callbackHeaders``
  token and ``callbackSecret`` of its dispatch example.
* The archived "Working with Webhooks" guide: its two example payloads, signed by its own
  Python ``verify_webhook_signature`` recipe with the secret of its registration example;
  its Node recipe, and the tenant quickstart's, check what the plugin forges (under node).
* The flow-step page: its request body (the comment dropped) signed by its own
  ``validateRequest`` recipe (under node, else the same hash in Python); its published
  signature is not one of its payload (SENDERS.md section 4) and gets the documented 400.
  Its server recipe checks what the plugin forges.

Noukai's guide has no sample (its code samples are missing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_hooks import Event, Hooks
from flask_hooks.providers import Narada
from pytest_hooks.delivery import SignedDelivery

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def node(script: str, data: Any) -> Any:
    """Run a JavaScript recipe on ``data`` (JSON on stdin); its JSON output."""
    assert NODE is not None
    wrapper = (
        "let input = ''; process.stdin.on('data', (c) => { input += c; });"
        " process.stdin.on('end', () => { const data = JSON.parse(input);"
        f" {script} }});"
    )
    proc = subprocess.run(
        [NODE, "-e", wrapper], input=json.dumps(data), capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(proc.stdout)


# Narada Cloud ------------------------------------------------------------------

#: The example payloads, as the page shows them (its spacing kept).
NARADA_SAMPLES = {
    "success": """{
"requestId" : "req_abc123def456" ,
"secret" : "your-secret-key-here" ,
"status" : "success" ,
"browserWindowId" : "window_xyz789" ,
"response" : {
"text" : "Found 1,234 software engineering job listings in the search results."
},
"createdAt" : "2024-11-21T10:00:00.000000+00:00" ,
"completedAt" : "2024-11-21T10:00:45.000000+00:00" ,
"usage" : {
"actions" : 12 ,
"credits" : 5
}
}""",
    "error": """{
"requestId" : "req_abc123def456" ,
"secret" : "your-secret-key-here" ,
"status" : "error" ,
"browserWindowId" : "window_xyz789" ,
"response" : {
"text" : "Failed to complete the task due to network timeout."
},
"createdAt" : "2024-11-21T10:00:00.000000+00:00" ,
"completedAt" : "2024-11-21T10:02:30.000000+00:00" ,
"usage" : {
"actions" : 8 ,
"credits" : 3
}
}""",
    "input-required": """{
"requestId" : "req_abc123def456" ,
"secret" : "your-secret-key-here" ,
"status" : "input-required" ,
"browserWindowId" : "window_xyz789" ,
"response" : {
"text" : "The task requires authentication. Please log in to continue."
},
"createdAt" : "2024-11-21T10:00:00.000000+00:00" ,
"completedAt" : "2024-11-21T10:00:15.000000+00:00" ,
"usage" : {
"actions" : 3 ,
"credits" : 1
}
}""",
    "structured-output": """{
"requestId" : "req_abc123def456" ,
"secret" : "your-secret-key-here" ,
"status" : "success" ,
"browserWindowId" : "window_xyz789" ,
"response" : {
"text" : "Successfully extracted job information." ,
"structuredOutput" : {
"title" : "Senior Software Engineer" ,
"company" : "TechCorp Inc." ,
"location" : "San Francisco, CA" ,
"salary" : "$150,000 - $200,000" ,
"remote" : true
}
},
"createdAt" : "2024-11-21T10:00:00.000000+00:00" ,
"completedAt" : "2024-11-21T10:00:52.000000+00:00" ,
"usage" : {
"actions" : 15 ,
"credits" : 6
}
}""",
}
#: From the dispatch example: ``callbackHeaders`` and ``callbackSecret``.
NARADA_AUTH = {"Authorization": "Bearer YOUR_WEBHOOK_TOKEN", "Content-Type": "application/json"}


def narada_app(make_app: Callable[..., Flask], calls: list[Event]) -> Flask:
    hooks = Hooks(
        provider=Narada(token="YOUR_WEBHOOK_TOKEN", secret="your-secret-key-here"), store="memory://"
    )
    hooks.on("success", "error", "input-required")(calls.append)
    return make_app(hooks)


@pytest.mark.parametrize("sample", NARADA_SAMPLES)
def test_narada_example_payloads(make_app: Callable[..., Flask], sample: str) -> None:
    calls: list[Event] = []
    client = narada_app(make_app, calls).test_client()
    body = NARADA_SAMPLES[sample]
    status = json.loads(body)["status"]

    response = client.post("/webhooks", data=body, headers=NARADA_AUTH)
    again = client.post("/webhooks", data=body, headers=NARADA_AUTH)

    assert (response.status_code, again.get_json()) == (200, {"status": "duplicate"})
    [event] = calls
    assert (event.id, event.type) == (f"req_abc123def456:{status}", status)
    assert event.payload["response"]["text"] == json.loads(body)["response"]["text"]
    assert event.payload["usage"] == json.loads(body)["usage"]
    if sample == "structured-output":
        assert event.payload["response"]["structuredOutput"]["remote"] is True


def test_narada_use_both_sample_requires_the_header_and_the_secret(make_app: Callable[..., Flask]) -> None:
    """The page's "Using both" check: ``!isValidHeader || !isValidSecret`` is a 401."""
    calls: list[Event] = []
    client = narada_app(make_app, calls).test_client()
    body = NARADA_SAMPLES["success"]
    json_only = {"Content-Type": "application/json"}
    wrong_token = {**NARADA_AUTH, "Authorization": "Bearer SOMEONE_ELSE"}
    wrong_secret = body.replace('"your-secret-key-here"', '"guessed"')
    null_secret = body.replace('"your-secret-key-here"', "null")
    for data, headers in (
        (body, json_only),
        (body, wrong_token),
        (wrong_secret, NARADA_AUTH),
        (null_secret, NARADA_AUTH),
    ):
        assert client.post("/webhooks", data=data, headers=headers).status_code == 401
    assert calls == []


# The archived generic guide and the tenant quickstart -------------------------

ARCHIVED_SECRET = "your_webhook_secret"  # its registration example's "secret"
ARCHIVED_CREATED = """{
  "id": "evt_abc123",
  "type": "resource.created",
  "created_at": "2025-02-18T10:30:00Z",
  "data": {
    "object": {
      "id": "res_xyz789",
      "name": "New Resource",
      "status": "active"
    }
  },
  "previous_data": null
}"""
ARCHIVED_UPDATED = """{
  "id": "evt_def456",
  "type": "resource.updated",
  "created_at": "2025-02-18T10:35:00Z",
  "data": {
    "object": {
      "id": "res_xyz789",
      "name": "Updated Resource",
      "status": "active"
    }
  },
  "previous_data": {
    "name": "Old Resource Name"
  }
}"""


def archived_signature(payload: str, secret: str) -> str:
    """The guide's ``verify_webhook_signature`` recipe, computing its expected signature."""
    return hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_webhook_signature(payload: str, signature: str, secret: str) -> bool:
    """The guide's Python recipe, as written."""
    return hmac.compare_digest(signature, archived_signature(payload, secret))


def test_archived_guide_example_payloads(make_app: Callable[..., Flask]) -> None:
    created: list[dict[str, Any]] = []
    updated: list[tuple[dict[str, Any], Any]] = []
    hooks = Hooks(secret=ARCHIVED_SECRET, store="memory://")

    @hooks.on("resource.created")
    def handle_resource_created(event: Event) -> None:
        created.append(event.payload["data"]["object"])

    @hooks.on("resource.updated")
    def handle_resource_updated(event: Event) -> None:
        updated.append((event.payload["data"]["object"], event.payload["previous_data"]))

    client = make_app(hooks).test_client()
    for body in (ARCHIVED_CREATED, ARCHIVED_UPDATED, ARCHIVED_CREATED):
        headers = {"X-Webhook-Signature": archived_signature(body, ARCHIVED_SECRET)}
        assert client.post("/webhooks", data=body, headers=headers).status_code == 200
    assert created == [{"id": "res_xyz789", "name": "New Resource", "status": "active"}]  # once
    assert updated == [
        ({"id": "res_xyz789", "name": "Updated Resource", "status": "active"}, {"name": "Old Resource Name"})
    ]
    forged = {"X-Webhook-Signature": archived_signature(ARCHIVED_UPDATED, "not_the_secret")}
    new = ARCHIVED_UPDATED.replace("evt_def456", "evt_new")
    assert client.post("/webhooks", data=new, headers=forged).status_code == 401
    assert len(updated) == 1


@pytest.fixture
def generic_app(make_app: Callable[..., Flask]) -> Flask:
    hooks = Hooks(secret=ARCHIVED_SECRET, store="memory://")
    hooks.on("*")(lambda event: None)
    return make_app(hooks)


def forged(app: Flask) -> SignedDelivery:
    receiver = app.extensions["hooks"].receivers["hooks"]
    return SignedDelivery.forge(app, receiver, "resource.created", {"data": {"object": {"id": "res_1"}}})


def test_the_archived_guides_python_recipe_accepts_what_the_plugin_forges(generic_app: Flask) -> None:
    delivery = forged(generic_app)
    signature = delivery.headers["X-Webhook-Signature"]
    assert verify_webhook_signature(delivery.body.decode(), signature, ARCHIVED_SECRET)


#: The archived guide's Node ``verifyWebhookSignature`` and the tenant quickstart's
#: ``verifySignature`` (its TypeScript types dropped), each on the raw body as text.
NODE_RECIPES = """
const crypto = require('crypto');
function archived(payload, signature, secret) {
  const expectedSignature = crypto.createHmac('sha256', secret).update(payload).digest('hex');
  return crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expectedSignature));
}
function quickstart(rawBody, signature, secret) {
  const expected = crypto.createHmac("sha256", secret).update(rawBody).digest("hex");
  return crypto.timingSafeEqual(Buffer.from(expected, "utf8"), Buffer.from(signature, "utf8"));
}
process.stdout.write(JSON.stringify({
  archived: archived(data.body, data.signature, data.secret),
  quickstart: quickstart(data.body, data.signature, data.secret),
}));
"""


@needs_node
def test_the_node_recipes_accept_what_the_plugin_forges(generic_app: Flask) -> None:
    delivery = forged(generic_app)
    data = {
        "body": delivery.body.decode(),
        "signature": delivery.headers["X-Webhook-Signature"],
        "secret": ARCHIVED_SECRET,
    }
    assert node(NODE_RECIPES, data) == {"archived": True, "quickstart": True}
    assert node(NODE_RECIPES, {**data, "secret": "other"}) == {"archived": False, "quickstart": False}


# Flow-step ---------------------------------------------------------------------

FLOWSTEP_KEY = "wsk_upsjOIYYLME2zLPaiDDe9BpXP2ZS8xnw"  # the page's SIGNATURE_KEY
FLOWSTEP_PUBLISHED = "8d63956cc6672bb644a026d081610054c6047550ce49cc230d90cbfd43409b25"
#: The page's request body with ``// optional data passed`` dropped (not JSON) and its
#: published signature.
FLOWSTEP_SAMPLE = """{
  "payload": {
    "data": {
      "foo": "bar"
    },
    "context": {
      "flow_id": "my_awesome_flow_identifier",
      "flow_name": "my_awesome_flow",
      "step_name": "step_b",
      "request_id": "mqr_4b81ae2d5613446e9e21d76ba2ce26fc",
      "triggered_by": {
        "step_name": "step_a",
        "step_execution_id": "ste_edf275e1e6e54212aa10662b05719d7a"
      },
      "dependencies_context": {
        "step_a": {
          "data": null,
          "exit_code": "success"
        }
      }
    }
  },
  "signature": "8d63956cc6672bb644a026d081610054c6047550ce49cc230d90cbfd43409b25"
}"""
#: The page's ``validateRequest``, returning the hash it compares with ``==``.
VALIDATE_REQUEST = """
const { createHash } = require('crypto');
const { payload, signature } = JSON.parse(data.body);
const message = `${JSON.stringify(payload)}${data.key}`;
const hash = createHash('sha256').update(message, 'utf-8').digest('hex').toString('hex');
process.stdout.write(JSON.stringify({ hash, valid: hash == signature }));
"""


def flowstep_hash(body: str) -> str:
    """What ``validateRequest`` computes (node when present; the sample has nothing JavaScript
    serialises differently from a compact Python dump)."""
    if NODE is not None:
        return str(node(VALIDATE_REQUEST, {"body": body, "key": FLOWSTEP_KEY})["hash"])
    payload = json.loads(body)["payload"]
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((text + FLOWSTEP_KEY).encode()).hexdigest()


def test_flowstep_sample_request(make_app: Callable[..., Flask]) -> None:
    steps: list[Event] = []
    hooks = Hooks(provider="flowstep", secret=FLOWSTEP_KEY, store="memory://")

    @hooks.on("step_b")
    def step_b(event: Event) -> dict[str, Any]:
        steps.append(event)
        return {"exit_code": "success", "data": {"myOutput": "myValue"}}

    client = make_app(hooks).test_client()
    # As published: the signature is not of this payload, so the documented 400.
    bad = client.post("/webhooks", data=FLOWSTEP_SAMPLE, headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.get_json()["status"] == "rejected"
    assert steps == []

    signed = FLOWSTEP_SAMPLE.replace(FLOWSTEP_PUBLISHED, flowstep_hash(FLOWSTEP_SAMPLE))
    assert signed != FLOWSTEP_SAMPLE
    for _ in range(2):  # the second is a duplicate, answered with the recorded step result
        response = client.post("/webhooks", data=signed, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        assert response.get_json() == {"exit_code": "success", "data": {"myOutput": "myValue"}}
    [event] = steps
    assert (event.id, event.type) == ("mqr_4b81ae2d5613446e9e21d76ba2ce26fc:step_b", "step_b")
    assert event.payload["data"] == {"foo": "bar"}
    assert event.payload["context"]["dependencies_context"]["step_a"] == {
        "data": None,
        "exit_code": "success",
    }


@needs_node
def test_the_flowstep_pages_validate_request_accepts_what_the_plugin_forges(
    make_app: Callable[..., Flask],
) -> None:
    hooks = Hooks(provider="flowstep", secret=FLOWSTEP_KEY, store="memory://")
    app = make_app(hooks)
    payload = {
        "foo": "bär",
        "n": 1.0,
        "big": 1e21,
        "tiny": 1e-7,
        "list": [1.5, -0.0, None],
        "u\u2028": "\u2029",
    }
    delivery = SignedDelivery.forge(app, hooks.receiver(app), "step_c", payload, id="mqr_1")
    result = node(VALIDATE_REQUEST, {"body": delivery.body.decode(), "key": FLOWSTEP_KEY})
    assert result["valid"] is True
    assert delivery.send().status_code == 200
