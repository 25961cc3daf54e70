"""Every row of the response table, through a real app and the test client."""

from __future__ import annotations

import io
import json
import logging
import math
import types
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from wsgiref.handlers import SimpleHandler

import pytest
from flask import Flask, Response, abort, jsonify, request
from werkzeug.test import EnvironBuilder

from flask_hooks import Event, Hooks, Retry
from flask_hooks.stores import MemoryStore
from tests.conftest import SECRET, generic_post, generic_signature
from tests.helpers import ManualClock


@pytest.fixture
def hooks() -> Hooks:
    return Hooks(store="memory://")


@pytest.fixture
def app(make_app: Callable[..., Flask], hooks: Hooks) -> Flask:
    return make_app(hooks)


def payload(id: str = "evt_1", type: str = "resource.created", **extra: Any) -> dict[str, Any]:
    return {"id": id, "type": type, "data": {"object": {"id": "res_1"}}, **extra}


def test_new_delivery_is_received(app: Flask, hooks: Hooks) -> None:
    seen: list[Event] = []
    hooks.on("resource.created")(seen.append)
    response = generic_post(app.test_client(), payload())
    assert response.status_code == 200
    assert response.get_json() == {"status": "received"}
    [event] = seen
    assert (event.id, event.type) == ("evt_1", "resource.created")
    assert (event.receiver, event.provider) == ("hooks", "generic")
    assert event.payload["data"]["object"]["id"] == "res_1"
    assert json.loads(event.body) == event.payload


def test_no_matching_handler_is_ignored_but_recorded(app: Flask, hooks: Hooks) -> None:
    hooks.on("user.*")(lambda e: None)
    client = app.test_client()
    assert generic_post(client, payload()).get_json() == {"status": "ignored"}
    assert generic_post(client, payload()).get_json() == {"status": "duplicate"}


def test_duplicate_of_completed_delivery(app: Flask, hooks: Hooks) -> None:
    calls: list[str] = []
    hooks.on("resource")(lambda e: calls.append(e.id))
    client = app.test_client()
    generic_post(client, payload())
    again = generic_post(client, payload())
    assert (again.status_code, again.get_json()) == (200, {"status": "duplicate"})
    assert calls == ["evt_1"]


def test_handler_return_value_is_the_body_and_is_replayed(app: Flask, hooks: Hooks) -> None:
    @hooks.on("resource.created")
    def created(event: Event) -> dict[str, Any]:
        return {"exit_code": "success", "data": {"id": event.id}}

    client = app.test_client()
    first = generic_post(client, payload())
    second = generic_post(client, payload())
    assert first.get_json() == second.get_json() == {"exit_code": "success", "data": {"id": "evt_1"}}
    assert first.status_code == second.status_code == 200


@pytest.mark.parametrize(
    ("value", "body", "mimetype"),
    [
        ("plain text", b"plain text", "text/html"),
        ([1, 2], b"[1, 2]", "application/json"),
        (Response("custom", status=202, mimetype="text/plain"), b"custom", "text/plain"),
    ],
)
def test_return_value_kinds(app: Flask, hooks: Hooks, value: Any, body: bytes, mimetype: str) -> None:
    hooks.on("*")(lambda e: value)
    client = app.test_client()
    first = generic_post(client, payload())
    second = generic_post(client, payload())
    assert first.get_data() == second.get_data() == body
    assert first.mimetype == second.mimetype == mimetype
    assert first.status_code == second.status_code


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_a_handlers_headers_are_answered_and_replayed(
    make_app: Callable[..., Flask], tmp_path: Any, store: str
) -> None:
    # The reply kept the body and the Content-Type only: Slack's X-Slack-No-Retry never reached it.
    hooks = Hooks(store=f"sqlite:///{tmp_path / 'hooks.db'}" if store == "sqlite" else store)
    app = make_app(hooks)
    sent = {"X-Slack-No-Retry": "1", "Link": "<a>", "Set-Cookie": "session=1", "Content-Length": "99"}

    @hooks.on("*")
    def handled(event: Event) -> Response:
        response = Response("ok", 200, sent, mimetype="text/plain")
        response.headers.add("Link", "<b>")
        return response

    client = app.test_client()
    for response in (generic_post(client, payload()), generic_post(client, payload())):
        assert (response.status_code, response.data, response.mimetype) == (200, b"ok", "text/plain")
        assert response.headers["X-Slack-No-Retry"] == "1"
        assert response.headers.getlist("Link") == ["<a>", "<b>"]
        assert "Set-Cookie" not in response.headers and response.headers["Content-Length"] == "2"


def served(app: Flask, body: bytes) -> bytes:
    """``body`` posted to ``app`` through wsgiref's server code (as a real server sends the
    answer, header encoding included), without a socket: the raw answer."""
    headers = {"X-Webhook-Signature": generic_signature(body, SECRET), "Content-Type": "application/json"}
    environ = EnvironBuilder("/webhooks", method="POST", data=body, headers=headers).get_environ()
    out, errors = io.BytesIO(), io.StringIO()
    SimpleHandler(environ["wsgi.input"], out, errors, environ, multithread=False).run(app)
    return out.getvalue()


def test_headers_a_server_cannot_send_are_not_kept(make_app: Callable[..., Flask]) -> None:
    # Kept, a value outside Latin-1 or a hop-by-hop header broke every answer in the server
    # after the delivery was recorded: the sender saw the connection drop, and retried for days.
    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    hooks.on("*")(lambda event: Response("ok", 200, UNSENDABLE, content_type=UNSENDABLE_TYPE))
    for _ in range(2):  # the first answer, then the duplicate's
        assert_sendable(served(app, json.dumps(payload()).encode()))


#: Headers gunicorn or wsgiref refuse (a value outside Latin-1, a control character, a
#: hop-by-hop header), and one they send.
UNSENDABLE = [
    ("X-Customer", "Zo\u00eb \u2014 ok"),
    ("X-Trace", "a\x01b"),
    ("Proxy-Authenticate", "Basic"),
    ("X-Ok", "\u00e9"),
]
UNSENDABLE_TYPE = "text/plain; title=caf\u00e9 \u2014 menu"


def assert_sendable(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nok"), answer
    assert b"X-Ok: \xe9\r\n" in answer and b"Content-Type: text/plain\r\n" in answer
    assert b"X-Customer" not in answer and b"X-Trace" not in answer and b"Proxy-Authenticate" not in answer


def test_a_reply_keeps_no_more_headers_than_senders_read(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    # 400 headers were kept and answered to every duplicate: Node's client (16 KiB of
    # headers) and Python's (100 of them) failed each attempt.
    from flask_hooks.core.replies import MAX_REPLY_HEADERS

    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    many = [(f"X-Item-{n}", "v" * 50) for n in range(400)]
    hooks.on("*")(lambda event: Response("ok", 200, many, mimetype="text/plain"))
    client = app.test_client()
    for response in (generic_post(client, payload()), generic_post(client, payload())):
        assert response.status_code == 200 and response.data == b"ok"
        items = [name for name, _ in response.headers.items() if name.startswith("X-Item-")]
        assert items == [f"X-Item-{n}" for n in range(MAX_REPLY_HEADERS)]
    assert "350 headers past the 50" in caplog.text


def test_a_kept_reply_that_cannot_be_sent_is_mended_for_its_duplicates(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Recorded by a version that kept such headers (or, before 0.2, such a Content-Type):
    # every duplicate's answer broke in the server.
    from flask_hooks import handler_reply

    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    hooks.on("*")(lambda event: Response("ok", 200, UNSENDABLE, content_type=UNSENDABLE_TYPE))
    body = json.dumps(payload()).encode()
    with monkeypatch.context() as old:
        old.setattr(handler_reply, "reply_headers", tuple)
        old.setattr(handler_reply, "reply_content_type", str)
        signed = {"X-Webhook-Signature": generic_signature(body, SECRET)}
        assert app.test_client().post("/webhooks", data=body, headers=signed).status_code == 200
    assert_sendable(served(app, body))


def test_a_not_done_reply_answers_its_retry_after(app: Flask, hooks: Hooks) -> None:
    returned = iter([("busy", 503, {"Retry-After": "30"}), None])
    hooks.on("*")(lambda e: next(returned))
    client = app.test_client()
    busy = generic_post(client, payload())
    assert (busy.status_code, busy.data, busy.headers.get("Retry-After")) == (503, b"busy", "30")
    assert generic_post(client, payload()).get_json() == {"status": "received"}


@pytest.mark.parametrize(
    "bad",
    [("X-Bad", "1\nX-Injected: y"), ("X-Bad", "1\r"), (b"X-Bad", "1"), (7, "1")],
    ids=["newline", "carriage-return", "bytes-name", "int-name"],
)
def test_a_not_done_reply_with_a_header_no_server_sends_stays_not_done(
    app: Flask, hooks: Hooks, bad: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Werkzeug refused the newline (and the store's header check the bytes or int name):
    # the reply could not be built, so it counted as a success, answered 200 and never retried.
    calls: list[str] = []

    @hooks.on("*")
    def busy(event: Event) -> Any:
        calls.append(event.id)
        return ("busy", 503, [("Retry-After", 30), bad]) if len(calls) == 1 else None

    client = app.test_client()
    first = generic_post(client, payload())
    assert (first.status_code, first.data, first.headers.get("Retry-After")) == (503, b"busy", "30")
    assert "X-Bad" not in first.headers and "X-Injected" not in first.headers
    assert "cannot be sent: dropped" in caplog.text
    assert generic_post(client, payload()).get_json() == {"status": "received"}
    assert calls == ["evt_1", "evt_1"]


def test_a_not_done_reply_keeps_its_other_headers_as_flask_merges_them(app: Flask, hooks: Hooks) -> None:
    # Dropping the header werkzeug refused once cut repeated ones to the last, and dropped
    # values werkzeug writes out (a UUID, a float).
    import uuid

    request_id = uuid.UUID(int=1)
    given = {"Link": ["<a>", "<b>"], "X-Request-Id": request_id, "Retry-After": 30.0, "X-Bad": "1\n"}
    returned = iter([(Response("busy", 503), given), None])
    hooks.on("*")(lambda e: next(returned))
    client = app.test_client()
    busy = generic_post(client, payload())
    assert (busy.status_code, busy.data) == (503, b"busy")
    assert busy.headers.getlist("Link") == ["<a>", "<b>"] and "X-Bad" not in busy.headers
    assert (busy.headers["X-Request-Id"], busy.headers["Retry-After"]) == (str(request_id), "30.0")
    assert generic_post(client, payload()).get_json() == {"status": "received"}


def test_a_not_done_response_with_a_header_name_that_is_no_text_stays_not_done(
    app: Flask, hooks: Hooks
) -> None:
    calls: list[str] = []

    @hooks.on("*")
    def busy(event: Event) -> Any:
        calls.append(event.id)
        if len(calls) > 1:
            return None
        response = Response("busy", 503)
        response.headers.add(7, "1")  # type: ignore[arg-type]
        return response

    client = app.test_client()
    assert generic_post(client, payload()).status_code == 503
    assert generic_post(client, payload()).get_json() == {"status": "received"}


def _stream(*chunks: Any, then: Any = None) -> Any:
    yield from chunks
    if then is not None:
        raise then


@pytest.mark.parametrize(
    "stream",
    [
        lambda: _stream("x" * 100 * 1024),  # over the cap
        lambda: _stream("partial", then=OSError("the file went away")),  # broke off
    ],
    ids=["over-the-cap", "broke-off"],
)
def test_a_streamed_not_done_reply_is_not_done_and_never_answered_cut_off(
    app: Flask, hooks: Hooks, stream: Callable[[], Any]
) -> None:
    # Cut at the cap, the sender got half a body; broken off, it was the handler's success.
    returned = iter([Response(stream(), 503, {"Retry-After": "5"}), None])
    hooks.on("*")(lambda e: next(returned))
    client = app.test_client()
    busy = generic_post(client, payload())
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert busy.get_json() == {"status": "error", "reason": "handler answered 503"}
    assert generic_post(client, payload()).get_json() == {"status": "received"}


def test_an_endless_stream_of_empty_chunks_ends(app: Flask, hooks: Hooks) -> None:
    from flask_hooks.core.replies import MAX_REPLY

    pulled: list[int] = []

    def empty() -> Any:  # bounded, so that a version reading it whole fails rather than hangs
        for _ in range(4 * MAX_REPLY):
            pulled.append(1)
            yield ""

    hooks.on("*")(lambda event: Response(empty()))
    client = app.test_client()
    assert generic_post(client, payload()).get_json() == {"status": "received"}  # not b"" kept
    assert generic_post(client, payload()).get_json() == {"status": "duplicate"}
    assert len(pulled) == MAX_REPLY + 1


@pytest.mark.parametrize(
    "headers",
    [
        [("Retry-After", "5"), ("X-A",)],  # a pair that is no pair
        ["Retry-After: 5", ("Retry-After", "5")],  # a raw header line
        iter([("Retry-After", "5"), ("X-Bad", "a\nb")]),  # any iterable, as Flask takes
        {"Retry-After": "5", "X-Bad": "a\nb"}.items(),
        {("Retry-After", "5"), ("X-Api-Key", "sk_live_KEY\r\n")},
        ["Authorization: Bearer sk_live_KEY", ("Retry-After", "5")],
        [("Authorization: Bearer sk_live_KEY",), ("Retry-After", "5")],
        [("X-Api-Key: sk_live_KEY\r\nX", "v"), ("Retry-After", "5")],
        types.MappingProxyType({"Retry-After": "5", "X-Bad": "a\nb"}),
    ],
    ids=[
        "short-pair",
        "raw-line",
        "iterator",
        "dict-items",
        "set",
        "raw-credential",
        "one-tuple",
        "name-with-a-line",
        "mapping",
    ],
)
def test_a_not_done_reply_with_malformed_headers_stays_not_done(
    app: Flask, hooks: Hooks, headers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    returned = iter([("busy", 503, headers), None])
    hooks.on("*")(lambda e: next(returned))
    client = app.test_client()
    busy = generic_post(client, payload())
    assert (busy.status_code, busy.data, busy.headers.get("Retry-After")) == (503, b"busy", "5")
    assert generic_post(client, payload()).get_json() == {"status": "received"}
    assert "cannot be sent: dropped" in caplog.text and "sk_live_KEY" not in caplog.text  # names only


@pytest.mark.parametrize("status", [200, 503])
def test_a_stream_that_raises_is_logged_without_the_secrets_it_quotes(
    app: Flask, hooks: Hooks, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    hooks.on("*")(lambda e: Response(_stream("ok", then=RuntimeError(f"signed with {SECRET}")), status))
    with caplog.at_level(logging.ERROR, logger="flask_hooks"):
        assert generic_post(app.test_client(), payload()).status_code == status
    assert "broke off" in caplog.text or "could not be built" in caplog.text
    assert SECRET not in caplog.text


def test_headers_merge_into_a_returned_response_as_flask_merges_them(app: Flask, hooks: Hooks) -> None:
    # A list's pairs replace one another by name (Flask's headers.update), a bad one or not.
    pairs = [("Link", "<a>"), ("Link", "<b>"), ("X-Bad", "a\nb")]
    hooks.on("*")(lambda e: (Response("busy", 503), pairs))
    assert generic_post(app.test_client(), payload()).headers.getlist("Link") == ["<b>"]


def test_a_returned_response_is_closed_as_a_server_would(app: Flask, hooks: Hooks) -> None:
    closed: list[bool] = []

    def reply(event: Event) -> Response:
        response = Response("ok", 200)
        response.call_on_close(lambda: closed.append(True))
        return response

    hooks.on("*")(reply)
    assert generic_post(app.test_client(), payload()).data == b"ok"
    assert closed == [True]


def test_a_streamed_reply_is_read_only_up_to_the_cap(app: Flask, hooks: Hooks) -> None:
    # The whole stream was read before the size cap applied: an endless one hung the worker.
    from flask_hooks.core.replies import MAX_REPLY

    pulled, closed = [], []

    def endless() -> Any:  # bounded, so that a version reading it whole fails rather than hangs
        try:
            for _ in range(4 * MAX_REPLY // 1024):
                pulled.append(1)
                yield "x" * 1024
        finally:
            closed.append(True)

    hooks.on("*")(lambda event: Response(endless(), mimetype="text/plain"))
    client = app.test_client()
    assert generic_post(client, payload()).get_json() == {"status": "received"}
    assert generic_post(client, payload()).get_json() == {"status": "duplicate"}
    assert len(pulled) == MAX_REPLY // 1024 + 1 and closed == [True]


def test_a_short_streamed_reply_is_kept_whole(app: Flask, hooks: Hooks) -> None:
    hooks.on("*")(lambda event: Response(iter(["o", b"k"]), 201, mimetype="text/plain"))
    client = app.test_client()
    for response in (generic_post(client, payload()), generic_post(client, payload())):
        assert (response.status_code, response.data) == (201, b"ok")


def test_an_abort_answers_werkzeugs_retry_after(app: Flask, hooks: Hooks) -> None:
    hooks.on("*")(lambda e: abort(503, retry_after=30))
    busy = generic_post(app.test_client(), payload())
    assert (busy.status_code, busy.headers.get("Retry-After")) == (503, "30")


def test_flask_response_helpers_work_as_return_values(app: Flask, hooks: Hooks) -> None:
    hooks.on("*")(lambda e: jsonify(ok=True))
    assert generic_post(app.test_client(), payload()).get_json() == {"ok": True}


def test_handler_exception_is_500_without_its_text_and_released(app: Flask, hooks: Hooks) -> None:
    attempts: list[int] = []

    @hooks.on("resource.created")
    def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database password is hunter2")

    client = app.test_client()
    failed = generic_post(client, payload())
    assert failed.status_code == 500
    assert failed.get_json() == {"status": "error", "reason": "handler failed"}
    assert b"hunter2" not in failed.get_data() and b"RuntimeError" not in failed.get_data()
    retried = generic_post(client, payload())
    assert retried.get_json() == {"status": "received"}
    assert len(attempts) == 2


def test_handler_retry_is_503_with_retry_after_and_released(app: Flask, hooks: Hooks) -> None:
    attempts: list[int] = []

    @hooks.on("resource.created")
    def later(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise Retry(after=30)

    client = app.test_client()
    response = generic_post(client, payload())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert generic_post(client, payload()).status_code == 200
    assert len(attempts) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Signature": ""},
        {"X-Webhook-Signature": "0" * 64},
        {"X-Webhook-Signature": "not hex at all"},
    ],
)
def test_bad_signature_is_401_and_nothing_claimed(app: Flask, hooks: Hooks, headers: dict[str, str]) -> None:
    calls: list[Event] = []
    hooks.on("*")(calls.append)
    client = app.test_client()
    body = json.dumps(payload()).encode()
    response = client.post("/webhooks", data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["status"] == "rejected"
    assert response.get_json()["reason"]
    assert calls == []
    # Nothing was claimed: the genuine delivery afterwards is new, not a duplicate.
    assert generic_post(client, payload()).get_json() == {"status": "received"}


def test_wrong_secret_is_401(app: Flask) -> None:
    response = generic_post(app.test_client(), payload(), secret="not-the-secret")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON"),
        (b"", "body is not JSON"),
        (b'{"type": "resource.created"}', "missing id"),
        (b'{"id": "evt_1"}', "missing type"),
        (b"[]", "payload is not a JSON object"),
    ],
)
def test_signed_but_unreadable_is_400(app: Flask, hooks: Hooks, body: bytes, reason: str) -> None:
    calls: list[Event] = []
    hooks.on("*")(calls.append)
    response = generic_post(app.test_client(), body)
    assert response.status_code == 400
    assert response.get_json() == {"status": "invalid", "reason": reason}
    assert calls == []


class Exploding(io.RawIOBase):
    """A request stream that fails the test if anyone reads it."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


def test_oversized_body_is_413_before_reading(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://", max_body=1000))
    client = app.test_client()
    response = client.post(
        "/webhooks",
        headers={"X-Webhook-Signature": "00"},
        environ_overrides={"wsgi.input": Exploding(), "CONTENT_LENGTH": "5000"},
    )
    assert response.status_code == 413
    assert response.get_json()["status"] == "rejected"


def test_oversized_streamed_body_is_413(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://", max_body=1000))
    body = json.dumps(payload(pad="x" * 5000)).encode()
    response = app.test_client().post(
        "/webhooks",
        headers={"X-Webhook-Signature": generic_signature(body)},
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "HTTP_TRANSFER_ENCODING": "chunked",
        },
    )
    assert response.status_code == 413


def test_streamed_body_under_the_limit_is_read_whole(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://", max_body=100_000))
    body = json.dumps(payload(pad="x" * 50_000)).encode()

    class Trickle(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:  # short reads, as WSGI allows
            return super().read(min(size if size and size > 0 else 4096, 4096))

    response = app.test_client().post(
        "/webhooks",
        headers={"X-Webhook-Signature": generic_signature(body)},
        environ_overrides={
            "wsgi.input": Trickle(body),
            "wsgi.input_terminated": True,
            "HTTP_TRANSFER_ENCODING": "chunked",
        },
    )
    assert response.status_code == 200


class Recording(io.BytesIO):
    """A server-terminated input that records the sizes it was asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def terminated_post(app: Flask, body: bytes, stream: io.BytesIO, length: int) -> Any:
    """A post the way gunicorn hands it over: Content-Length and ``wsgi.input_terminated``."""
    return app.test_client().post(
        "/webhooks",
        headers={"X-Webhook-Signature": generic_signature(body)},
        environ_overrides={
            "wsgi.input": stream,
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": str(length),
        },
    )


def test_terminated_input_is_read_by_its_length_not_the_limit(make_app: Callable[..., Flask]) -> None:
    # Reads sized by the 1 MiB limit made gunicorn allocate a 1 MiB buffer per request.
    app = make_app(Hooks(store="memory://", max_body=1024 * 1024))
    body = json.dumps(payload()).encode()
    stream = Recording(body)
    assert terminated_post(app, body, stream, len(body)).status_code == 200
    assert stream.asked == [len(body)]


def test_terminated_input_shorter_than_its_length_is_400(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://"))
    body = json.dumps(payload()).encode()
    response = terminated_post(app, body, io.BytesIO(body), len(body) + 5)
    assert response.status_code == 400
    assert response.get_json() == {"status": "invalid", "reason": "body shorter than Content-Length"}


def test_terminated_input_is_cut_at_its_length(make_app: Callable[..., Flask]) -> None:
    # As werkzeug reads every other server's input: the bytes past Content-Length are not
    # the body, so the signature over all of them does not match.
    app = make_app(Hooks(store="memory://"))
    body = json.dumps(payload()).encode()
    assert terminated_post(app, body, io.BytesIO(body), len(body) - 5).status_code == 401


def test_body_at_the_limit_is_accepted(make_app: Callable[..., Flask]) -> None:
    body = json.dumps(payload()).encode()
    app = make_app(Hooks(store="memory://", max_body=len(body)))
    assert generic_post(app.test_client(), body).status_code == 200


@pytest.mark.parametrize(
    "method", ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "FOO"]
)
@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/"])
def test_other_methods_are_405(app: Flask, method: str, path: str) -> None:
    # OPTIONS got werkzeug's HTML 405, whose Allow listed the methods refused here; so did
    # every method no rule listed (TRACE, WebDAV's, made-up ones).
    response = app.test_client().open(path, method=method)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert response.mimetype == "application/json"
    if method != "HEAD":
        assert response.get_json() == {"status": "method not allowed", "reason": "deliveries are POSTed"}


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/", "/webhooks//"])
def test_path_variants_never_redirect(app: Flask, hooks: Hooks, path: str) -> None:
    hooks.on("*")(lambda e: None)
    client = app.test_client()
    assert generic_post(client, payload(), url=path).status_code == 200
    for method in ("GET", "POST"):
        assert not 300 <= client.open(path, method=method).status_code < 400


@pytest.mark.parametrize(
    ("after", "header"),
    [
        (math.nan, "30"),
        (None, "30"),
        (math.inf, "604800"),
        (10**400, "604800"),
        (-5, "1"),
        (-math.inf, "1"),
        (2.2, "3"),
        (timedelta(minutes=2), "120"),
        (timedelta(days=30), "604800"),
    ],
    ids=["nan", "none", "inf", "huge-int", "negative", "minus-inf", "fraction", "timedelta", "long-delta"],
)
def test_a_retry_with_an_odd_delay_is_still_a_503(
    make_app: Callable[..., Flask], after: Any, header: str
) -> None:
    """``Retry(after=nan)`` raised ValueError and ``inf`` or ``10**400`` OverflowError inside
    the handler: its 503 became a 500. ``after=None`` gave 1 s, not the default 30, and
    ``after=timedelta(minutes=2)`` 30 s."""
    hooks = Hooks(store="memory://")

    @hooks.on("*")
    def later(event: Event) -> None:
        raise Retry(after=after)

    response = generic_post(make_app(hooks).test_client(), payload())
    assert (response.status_code, response.headers["Retry-After"]) == (503, header)


@pytest.mark.parametrize("path", ["//hooks//in", "/hooks//in/", "/hooks///in//", "//hooks/in"])
def test_doubled_slashes_inside_the_url_reach_the_receiver(
    make_app: Callable[..., Flask], path: str
) -> None:
    """``/hooks//in`` found no rule: a 404, which an app's 404 handler turned into a redirect,
    or into a page answered 200, which told the sender the delivery was taken."""
    from flask import redirect

    seen: list[str] = []
    hooks = Hooks(store="memory://", url="/hooks/in")
    hooks.on("*")(lambda event: seen.append(event.id))
    app = make_app(hooks)
    app.register_error_handler(404, lambda error: redirect("/"))
    body = json.dumps(payload()).encode()
    client, where = app.test_client(), {"PATH_INFO": path}  # a client would read "//hooks" as a host
    signed = {"X-Webhook-Signature": generic_signature(body)}
    response = client.post("/", data=body, headers=signed, environ_overrides=where)
    assert (response.status_code, seen) == (200, ["evt_1"])
    refused = client.get("/", environ_overrides=where)
    assert (refused.status_code, refused.mimetype) == (405, "application/json")
    elsewhere = client.post("/", environ_overrides={"PATH_INFO": "/other//path"})
    assert elsewhere.status_code == 302  # the app's own 404, as it answers it


@pytest.mark.parametrize("url", ["/hooks/in/", "/deep/path"])
def test_configured_url_with_or_without_slash(make_app: Callable[..., Flask], url: str) -> None:
    app = make_app(Hooks(store="memory://", url=url))
    client = app.test_client()
    for path in (url.rstrip("/"), url.rstrip("/") + "/"):
        assert generic_post(client, payload(id=path), url=path).status_code == 200


def test_in_flight_duplicate_is_409_with_retry_after(make_app: Callable[..., Flask]) -> None:
    clock = ManualClock()
    store = MemoryStore()
    hooks = Hooks(store=store, clock=clock, lease=60)
    app = make_app(hooks)
    store.claim(hooks.receiver(app).ns, "evt_1", now=clock(), lease=60, ttl=86400)  # another worker holds it
    clock.advance(20)
    response = generic_post(app.test_client(), payload())
    assert response.status_code == 409
    assert response.get_json()["status"] == "in-flight"
    assert response.headers["Retry-After"] == "40"


def test_store_unreachable_is_503_never_2xx(make_app: Callable[..., Flask], tmp_path: Any) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "store.sqlite3").mkdir()
    calls: list[Event] = []
    hooks = Hooks(store=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    hooks.on("*")(calls.append)
    app = make_app(hooks)
    response = generic_post(app.test_client(), payload())
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "store unavailable"}
    assert "Retry-After" in response.headers
    assert calls == []


def test_secret_from_config_and_keyword_wins(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://", secret="kw-secret"))
    client = app.test_client()
    assert generic_post(client, payload(), secret=SECRET).status_code == 401
    assert generic_post(client, payload(), secret="kw-secret").status_code == 200


# The app's own hooks reading the body first -------------------------------------------------

SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_a_before_request_hook_reading_the_form_leaves_the_body_to_verify(
    make_app: Callable[..., Flask],
) -> None:
    # Slack's published slash-command vector. Werkzeug keeps no bytes of a parsed form.
    hooks = Hooks(
        store="memory://",
        provider="slack",
        secret="8f742231b10e8888abcd99yyyzzz85a5",
        clock=ManualClock(1531420618),
    )
    seen: list[Event] = []
    hooks.on("command")(seen.append)
    app = make_app(hooks)
    app.before_request(lambda: request.values.get("lang") and None)
    response = app.test_client().post(
        "/webhooks",
        data=SLACK_BODY,
        content_type="application/x-www-form-urlencoded",
        headers={
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        },
    )
    assert response.status_code == 200
    assert [event.body for event in seen] == [SLACK_BODY]


def post_terminated(app: Flask, body: bytes, framing: str) -> Any:
    """A signed delivery on an input the server terminates (gunicorn's), framed by
    ``CONTENT_LENGTH`` or chunked (``HTTP_TRANSFER_ENCODING``)."""
    return app.test_client().post(
        "/webhooks",
        content_type="application/json",
        headers={"X-Webhook-Signature": generic_signature(body)},
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            framing: str(len(body)) if framing == "CONTENT_LENGTH" else "chunked",
        },
    )


@pytest.mark.parametrize("hook", ["registered after init_app", "registered before"])
@pytest.mark.parametrize("framing", ["CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"])
def test_a_before_request_hook_reading_json_leaves_a_terminated_body_to_verify(
    make_app: Callable[..., Flask], framing: str, hook: str
) -> None:
    # gunicorn's input is read once: a logging hook's get_json() used to leave the receiver nothing.
    hooks = Hooks(store="memory://")
    seen: list[Event] = []
    hooks.on("*")(seen.append)
    app = make_app()
    if hook == "registered before":
        app.before_request(lambda: request.get_json(silent=True) and None)
    hooks.init_app(app)
    if hook != "registered before":
        app.before_request(lambda: request.get_json(silent=True) and None)
    body = json.dumps(payload()).encode()
    response = post_terminated(app, body, framing)
    assert response.status_code == 200
    assert [event.body for event in seen] == [body]


def test_a_chunked_body_the_server_does_not_pass_on_is_a_400_that_says_so(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """WSGI under an ASGI adapter (asgiref's WsgiToAsgi, a2wsgi): a chunked body comes with
    neither Content-Length nor wsgi.input_terminated, so nothing may be read. It was verified
    as an empty body: a correctly signed delivery answered 401 "signature mismatch"."""
    hooks = Hooks(store="memory://")
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    body = json.dumps(payload()).encode()
    with caplog.at_level(logging.ERROR, "flask_hooks"):
        response = app.test_client().post(
            "/webhooks",
            content_type="application/json",
            headers={"X-Webhook-Signature": generic_signature(body)},
            environ_overrides={"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked"},
        )
    reason = "chunked body the server does not pass on"
    assert (response.status_code, response.get_json()["reason"]) == (400, reason)
    assert "serve the app with a WSGI server" in caplog.text


@pytest.mark.parametrize("reader", ["url_value_preprocessor", "request_started"])
def test_a_body_read_before_the_receivers_hook_is_taken_from_werkzeugs_cache(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, reader: str
) -> None:
    """Code that runs before any before_request hook read the body through werkzeug: every
    valid delivery was a 400 "body shorter than Content-Length", which points at the network.
    Its cached bytes are the body; a parsed form, which keeps none, is a 400 that says why."""
    from flask import request_started

    hooks = Hooks(store="memory://")
    seen: list[bytes] = []
    hooks.on("*")(lambda event: seen.append(event.body))
    app = make_app(hooks)
    read: list[Callable[[], object]] = [lambda: request.get_data()]

    def early(*args: Any, **kwargs: Any) -> None:
        read[0]()

    if reader == "url_value_preprocessor":
        app.url_value_preprocessor(early)
    else:
        request_started.connect(early, app)
    try:
        body = json.dumps(payload()).encode()
        response = generic_post(app.test_client(), body)
        assert response.status_code == 200 and seen == [body]
        read[0] = lambda: request.form
        with caplog.at_level(logging.ERROR, "flask_hooks"):
            form = app.test_client().post(
                "/webhooks",
                data=b"a=1",
                content_type="application/x-www-form-urlencoded",
                headers={"X-Webhook-Signature": generic_signature(b"a=1")},
            )
        assert (form.status_code, form.get_json()["reason"]) == (400, "body read before the receiver")
        assert "have that code skip the receiver's URL" in caplog.text
    finally:
        request_started.disconnect(early, app)


def test_a_stream_touched_but_not_read_before_the_receiver_leaves_the_body_to_it(
    make_app: Callable[..., Flask],
) -> None:
    """``request.values`` touched by a ``request_started`` subscriber builds werkzeug's
    stream, bounded by the app's smaller MAX_CONTENT_LENGTH, without reading it: the body
    was then read through it, cut at that limit, and a valid delivery got a 401."""
    from flask import request_started

    hooks = Hooks(store="memory://")
    seen: list[bytes] = []
    hooks.on("*")(lambda event: seen.append(event.body))
    app = make_app(hooks, MAX_CONTENT_LENGTH=1000)
    body = json.dumps(payload(pad="x" * 3000)).encode()

    def touch(sender: Flask, **extra: Any) -> None:
        assert request.values is not None

    with request_started.connected_to(touch, app):
        response = post_terminated(app, body, "HTTP_TRANSFER_ENCODING")
    assert (response.status_code, seen) == (200, [body])


@pytest.mark.parametrize("terminated", [False, True], ids=["test client", "gunicorn's input"])
def test_a_handler_reading_the_request_reads_the_same_body(
    make_app: Callable[..., Flask], terminated: bool
) -> None:
    # The receiver reads the WSGI input itself; what reads the request after it reads the same bytes.
    hooks = Hooks(store="memory://")
    seen: list[bytes] = []
    hooks.on("*")(lambda event: seen.extend([request.get_data(), json.dumps(request.get_json()).encode()]))
    app = make_app(hooks)
    body = json.dumps(payload()).encode()
    response = app.test_client().post(
        "/webhooks",
        data=body,
        content_type="application/json",
        headers={"X-Webhook-Signature": generic_signature(body)},
        environ_overrides={"wsgi.input_terminated": True} if terminated else {},
    )
    assert response.status_code == 200
    assert seen == [body, body]


@pytest.mark.parametrize("framing", ["", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"])
def test_max_body_is_the_limit_not_the_apps_max_content_length(
    make_app: Callable[..., Flask], framing: str
) -> None:
    # The app caps its forms at 100 bytes; the receiver takes what max_body allows, and
    # refuses more with its own 413 (JSON, signal, log), never werkzeug's HTML page.
    app = make_app(Hooks(store="memory://", max_body=1000), MAX_CONTENT_LENGTH=100)
    for size, status in ((500, 200), (5000, 413)):
        body = json.dumps(payload(id=f"evt_{size}", pad="x" * size)).encode()
        overrides: dict[str, Any] = {}
        if framing:
            overrides = {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True}
            overrides[framing] = str(len(body)) if framing == "CONTENT_LENGTH" else "chunked"
        response = app.test_client().post(
            "/webhooks",
            data=None if framing else body,
            headers={"X-Webhook-Signature": generic_signature(body)},
            environ_overrides=overrides,
        )
        assert (response.status_code, response.is_json) == (status, True)


class BrokenChunks(io.RawIOBase):
    """A chunked input whose framing breaks after some bytes, as gunicorn's raises."""

    class FramingError(Exception):
        """Like gunicorn's ``NoMoreData`` or ``InvalidChunkSize``: no ``OSError``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self.FramingError("Invalid chunk size: 'zz'")


@pytest.mark.parametrize("stream", [BrokenChunks(), io.BytesIO(b'{"id": "evt_1"')])
def test_a_body_that_breaks_off_is_400_not_500(calls_app: Any, stream: io.IOBase) -> None:
    # The first: gunicorn's chunked input; the second: a body shorter than its length on a
    # server that does not terminate its input (werkzeug raises ClientDisconnected).
    app, seen = calls_app
    overrides: dict[str, Any] = {"wsgi.input": stream}
    if isinstance(stream, BrokenChunks):
        overrides.update({"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    else:
        overrides["CONTENT_LENGTH"] = "100"
    response = app.test_client().post(
        "/webhooks", headers={"X-Webhook-Signature": "00"}, environ_overrides=overrides
    )
    assert response.status_code == 400
    assert response.get_json()["status"] == "invalid"
    assert seen == []


@pytest.fixture
def calls_app(make_app: Callable[..., Flask]) -> tuple[Flask, list[Event]]:
    hooks = Hooks(store="memory://")
    seen: list[Event] = []
    hooks.on("*")(seen.append)
    return make_app(hooks), seen


def test_a_retrys_own_words_never_reach_the_sender(make_app: Callable[..., Flask]) -> None:
    # Retry(reason) was answered as the 503's reason, and kept as the attempt's reason in
    # `deliveries --json`: a handler quoting what it was given sent back credentials.
    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    quoted = f"upstream said {SECRET}"
    hooks.on("*")(lambda event: (_ for _ in ()).throw(Retry(quoted, after=30)))
    response = generic_post(app.test_client(), payload())
    assert (response.status_code, response.headers["Retry-After"]) == (503, "30")
    assert response.get_json() == {"status": "retry", "reason": "retry later"}
    listed = app.test_cli_runner().invoke(args=["hooks", "deliveries", "--json"])
    assert SECRET not in listed.output and "retry later" in listed.output


def test_the_store_failing_under_a_handler_is_logged_as_the_store(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """An atomic handler's record of success or commit finding its database gone raised
    StoreUnavailable through the handler: a 503 "retry", as for ``Retry``, and no line said
    the store was why (``flask hooks deliveries`` showed no cause either). The cause may quote
    what the handler was given: blanked."""
    import sqlite3

    from flask_hooks.core.errors import StoreUnavailable

    hooks = Hooks(store="memory://")

    @hooks.on("*", name="book")
    def book(event: Event) -> None:
        raise StoreUnavailable() from sqlite3.OperationalError(f"database or disk is full ({SECRET})")

    with caplog.at_level(logging.WARNING, logger="flask_hooks"):
        response = generic_post(make_app(hooks).test_client(), payload())
    answered = {"status": "unavailable", "reason": "store unavailable"}
    assert (response.status_code, response.json, response.headers["Retry-After"]) == (503, answered, "5")
    line = "store unavailable for hooks at book: OperationalError: database or disk is full ([redacted])"
    assert line in caplog.text and SECRET not in caplog.text
