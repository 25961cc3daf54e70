"""``flowstep``: flow-step webhooks, signed inside the body.

The body is ``{"payload": ..., "signature": ...}`` and the signature is
the plain SHA-256 hex of ``JSON.stringify(payload) + key`` (no HMAC). The
payload is re-serialised from the received bytes exactly as JavaScript
would (:mod:`._jsjson`), never from a Python re-dump. A bad signature is
answered with 400, as the sender documents. The handler's return value
(``{"exit_code": "success", "data": ...}``) is the step result the flow
reads from the response body.

``event.payload`` is the inner ``payload`` object (``data`` and
``context``) as Python reads ``JSON.stringify(payload)``, the text that
was signed; the id is ``context.request_id + ":" + context.step_name``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ..errors import HookError, PayloadError, VerificationError
from ..event import HeaderMap
from . import _jsjson
from ._json import load_json_text
from .base import (
    Outgoing,
    Parsed,
    Provider,
    SignedRequest,
    Tolerance,
    Verified,
    field,
    outgoing_payload,
    require_str,
)


def _signed(body: bytes, error: type[HookError]) -> tuple[str, str]:
    """``JSON.stringify(payload)`` as the sender computed it, and the claimed signature.

    ``error`` is what a malformed envelope raises: a failed verification
    in :meth:`FlowStep.verify`, a bad payload in :meth:`FlowStep.parse`.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise error("body is not UTF-8") from None
    try:
        parsed = _jsjson.parse(text)
    except (ValueError, RecursionError):
        raise error("body is not JSON") from None
    if not isinstance(parsed, _jsjson.JSObject):
        raise error("body is not a JSON object")
    fields = dict(parsed)
    if "payload" not in fields:
        raise error("missing payload")
    signature = fields.get("signature")
    if not isinstance(signature, str) or not signature or not signature.isascii():
        raise error("missing signature")
    try:
        return _jsjson.stringify(fields["payload"]), signature
    except RecursionError:
        raise error("payload too deep") from None


def digest(text: str, key: bytes) -> str:
    """``sha256(JSON.stringify(payload) + key)`` as lowercase hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass") + key).hexdigest()


class FlowStep(Provider):
    """Flow-step callbacks; the response body is the handler's step result."""

    name = "flowstep"
    rejection_status = 400
    signs_timestamp = False

    def verify(
        self,
        headers: HeaderMap,
        body: bytes,
        keys: Sequence[bytes],
        *,
        now: float,
        tolerance: Tolerance,
    ) -> Verified:
        text, signature = _signed(body, VerificationError)
        given = signature.encode("ascii")
        for index, key in enumerate(keys):
            if hmac.compare_digest(digest(text, key).encode("ascii"), given):
                return Verified(secret_index=index)
        raise VerificationError("signature mismatch")

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        """Python's reading of the very text that was hashed, not of the raw bytes.

        Parsing the bytes directly would hand the handler values nobody
        signed: JavaScript reads ``1e999`` as Infinity and signs ``null``,
        and ``9007199254740993`` as ``9007199254740992``.
        """
        text, _ = _signed(body, PayloadError)
        payload = load_json_text(text)
        if not isinstance(payload, dict):
            raise PayloadError("payload is not a JSON object")
        request_id = require_str(field(payload, "context", "request_id"), "context.request_id")
        step = require_str(field(payload, "context", "step_name"), "context.step_name")
        if ":" in request_id:  # ("a:b", "c") and ("a", "b:c") would be one id; step names may have one
            raise PayloadError("context.request_id has a ':'")
        # Checked again as a whole: two fields of MAX_ID each make a key no store should have to take.
        return Parsed(id=require_str(f"{request_id}:{step}", "id"), type=step, payload=payload)

    def sign(self, outgoing: Outgoing, key: bytes) -> SignedRequest:
        """Build the body as the sender does: ``payload`` first, then ``signature``.

        ``outgoing.type`` is the step name; ``outgoing.id`` the request id
        (a trailing ``":<step>"`` is dropped so the event id equals it).
        A payload that already has a ``context`` is sent as it is.
        """
        request_id = outgoing.id
        if request_id.endswith(f":{outgoing.type}"):
            request_id = request_id[: -len(outgoing.type) - 1]
        given = outgoing_payload(outgoing)
        if isinstance(given, dict) and isinstance(given.get("context"), dict):
            payload = given
        else:
            payload = {
                "data": given,
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
