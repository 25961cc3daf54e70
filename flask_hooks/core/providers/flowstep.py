"""``flowstep``: flow-step webhooks (seed 004), signed inside the body.

The body is ``{"payload": ..., "signature": ...}`` and the signature is
the plain SHA-256 hex of ``JSON.stringify(payload) + key`` (no HMAC). The
payload is re-serialised from the received bytes exactly as JavaScript
would (:mod:`._jsjson`), never from a Python re-dump. A bad signature is
answered with 400, as the sender documents. The handler's return value
(``{"exit_code": "success", "data": ...}``) is the step result the flow
reads from the response body.

``event.payload`` is the inner ``payload`` object (``data`` and
``context``); the id is ``context.request_id + ":" + context.step_name``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from ..errors import PayloadError, VerificationError
from ..event import Headers
from . import _jsjson
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    field,
    load_json,
    require_str,
)


def _envelope(body: bytes) -> tuple[Any, str]:
    """The JS-ordered payload and the claimed signature, or a rejection."""
    try:
        parsed = _jsjson.parse(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise VerificationError("body is not JSON") from None
    if not isinstance(parsed, _jsjson.JSObject):
        raise VerificationError("body is not a JSON object")
    fields = dict(parsed)
    if "payload" not in fields:
        raise VerificationError("missing payload")
    signature = fields.get("signature")
    if not isinstance(signature, str) or not signature or not signature.isascii():
        raise VerificationError("missing signature")
    return fields["payload"], signature


def digest(text: str, key: bytes) -> str:
    """``sha256(JSON.stringify(payload) + key)`` as lowercase hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass") + key).hexdigest()


class FlowStep(Provider):
    """Flow-step callbacks; the response body is the handler's step result."""

    name = "flowstep"
    rejection_status = 400

    def verify(
        self,
        headers: Headers,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        payload, signature = _envelope(body)
        try:
            text = _jsjson.stringify(payload)
        except RecursionError:
            raise VerificationError("payload too deep") from None
        given = signature.encode("ascii")
        for index, key in enumerate(keys):
            if hmac.compare_digest(digest(text, key).encode("ascii"), given):
                return Verified(secret_index=index)
        raise VerificationError("signature mismatch")

    def parse(self, headers: Headers, body: bytes) -> Parsed:
        payload = field(load_json(body), "payload")
        if not isinstance(payload, dict):
            raise PayloadError("payload is not a JSON object")
        request_id = require_str(field(payload, "context", "request_id"), "context.request_id")
        step = require_str(field(payload, "context", "step_name"), "context.step_name")
        return Parsed(id=f"{request_id}:{step}", type=step, payload=payload)

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        """Build the body as the sender does: ``payload`` first, then ``signature``.

        ``outgoing.type`` is the step name; ``outgoing.id`` the request id
        (a trailing ``":<step>"`` is dropped so the event id equals it).
        A payload that already has a ``context`` is sent as it is.
        """
        request_id = outgoing.id
        if request_id.endswith(f":{outgoing.type}"):
            request_id = request_id[: -len(outgoing.type) - 1]
        given = outgoing.payload
        if isinstance(given, dict) and isinstance(given.get("context"), dict):
            payload = given
        else:
            payload = {
                "data": given if given is not None else {},
                "context": {
                    "flow_id": "flow",
                    "flow_name": "flow",
                    "step_name": outgoing.type,
                    "request_id": request_id,
                    "triggered_by": None,
                    "dependencies_context": {},
                },
            }
        text = _jsjson.stringify(payload)
        body = '{"payload":' + text + ',"signature":' + _jsjson.quote(digest(text, key)) + "}"
        return SignedRequest(
            body=body.encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json"},
        )
