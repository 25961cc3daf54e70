"""Signals: sent with the app as sender, in order, with receiver and event."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_hooks import Event, Hooks, signals
from tests.conftest import SECRET, generic_post

ALL = [
    "delivery_received",
    "delivery_verified",
    "delivery_rejected",
    "delivery_duplicate",
    "event_handled",
    "event_ignored",
    "handler_failed",
]


@contextmanager
def recording(app: Flask) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    with ExitStack() as stack:
        for name in ALL:
            def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
                assert sender is app
                seen.append((_name, kwargs))

            stack.enter_context(getattr(signals, name).connected_to(receiver, sender=app))
        yield seen


def names(seen: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [n for n, _ in seen]


@pytest.fixture
def hooks() -> Hooks:
    return Hooks(store="memory://")


def test_signal_names_are_hyphenated_in_a_private_namespace() -> None:
    assert signals.delivery_received.name == "delivery-received"
    assert signals.handler_failed.name == "handler-failed"


def test_handled_delivery_then_duplicate(make_app: Callable[..., Flask], hooks: Hooks) -> None:
    @hooks.on("resource.created")
    def created(event: Event) -> None:
        pass

    app = make_app(hooks)
    client = app.test_client()
    with recording(app) as seen:
        generic_post(client, {"id": "e1", "type": "resource.created"})
        generic_post(client, {"id": "e1", "type": "resource.created"})
    assert names(seen) == [
        "delivery_received",
        "delivery_verified",
        "event_handled",
        "delivery_received",
        "delivery_verified",
        "delivery_duplicate",
    ]
    assert all(kwargs["receiver"] == "hooks" for _, kwargs in seen)
    event = seen[1][1]["event"]
    assert isinstance(event, Event) and event.id == "e1"
    assert seen[2][1]["handlers"] == (f"{__name__}.test_handled_delivery_then_duplicate.<locals>.created",)
    assert seen[5][1]["in_flight"] is False


def test_rejected_ignored_and_failed(make_app: Callable[..., Flask], hooks: Hooks) -> None:
    error = ValueError("nope")

    @hooks.on("fails")
    def failing(event: Event) -> None:
        raise error

    app = make_app(hooks)
    client = app.test_client()
    with recording(app) as seen:
        generic_post(client, {"id": "e1", "type": "x"}, secret="wrong")
        generic_post(client, b"not json")
        generic_post(client, {"id": "e2", "type": "unrouted"})
        generic_post(client, {"id": "e3", "type": "fails"})
    assert names(seen) == [
        "delivery_received",
        "delivery_rejected",
        "delivery_received",
        "delivery_rejected",
        "delivery_received",
        "delivery_verified",
        "event_ignored",
        "delivery_received",
        "delivery_verified",
        "handler_failed",
    ]
    assert seen[1][1] == {"receiver": "hooks", "reason": "signature mismatch"}
    assert seen[3][1] == {"receiver": "hooks", "reason": "body is not JSON"}
    assert seen[6][1]["event"].id == "e2"
    failed = seen[9][1]
    assert failed["error"] is error and failed["event"].id == "e3"
    assert failed["handler"].endswith("failing")


def test_a_raising_subscriber_is_logged_without_the_handlers_error_it_was_told_of(
    make_app: Callable[..., Flask], hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    """The pipeline logs a failed handler's traceback with the credentials blanked; a
    handler_failed subscriber raising in turn must not log that traceback again, whole."""

    @hooks.on("fails")
    def failing(event: Event) -> None:
        raise RuntimeError(f"could not use {SECRET}")

    def reporter(sender: Flask, error: BaseException, **extra: Any) -> None:
        assert sys.exc_info()[1] is error  # subscribers still run while it is being handled
        try:
            raise OSError("socket closed")
        except OSError:
            raise ConnectionError("reporter down")  # noqa: B904 - its context, as a subscriber's often is

    app = make_app(hooks)
    with signals.handler_failed.connected_to(reporter, app), caplog.at_level(logging.ERROR, "flask_hooks"):
        assert generic_post(app.test_client(), {"id": "e1", "type": "fails"}).status_code == 500
    assert "a subscriber of handler-failed raised" in caplog.text
    assert "reporter down" in caplog.text and "socket closed" in caplog.text  # its own error, whole
    assert "could not use" in caplog.text  # the pipeline's own line, blanked
    assert SECRET not in caplog.text


class AsyncApp(Flask):
    """Runs coroutines with asyncio, as Flask's docs show to do without asgiref."""

    def async_to_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: asyncio.run(func(*args, **kwargs))


def test_async_subscribers_run_as_they_do_for_flasks_own_signals(tmp_path: Path, hooks: Hooks) -> None:
    hooks.on("resource.created")(lambda event: None)
    app = AsyncApp("async_app", instance_path=str(tmp_path))
    app.config.update(HOOKS_SECRET=SECRET)
    hooks.init_app(app)
    seen: list[str] = []

    async def subscriber(sender: Flask, event: Event, **extra: Any) -> None:
        seen.append(event.id)

    with signals.event_handled.connected_to(subscriber, app):
        assert generic_post(app.test_client(), {"id": "e1", "type": "resource.created"}).status_code == 200
    assert seen == ["e1"]


@pytest.mark.parametrize(
    "signal", ["delivery_received", "delivery_verified", "event_handled", "handler_failed"]
)
def test_a_raising_subscribers_traceback_is_logged_with_the_credentials_blanked(
    make_app: Callable[..., Flask], hooks: Hooks, caplog: pytest.LogCaptureFixture, signal: str
) -> None:
    """A subscriber may quote what it was given, as a handler may: the receiver's secret,
    the delivery's bearer token. Its logged traceback blanks them as a handler's does."""

    @hooks.on("*")
    def handler(event: Event) -> None:
        if event.type == "fails":
            raise RuntimeError("handler down")

    def subscriber(sender: Flask, **extra: Any) -> None:
        raise ValueError(f"subscriber saw {SECRET} and {request.headers['Authorization']}")

    app, kind = make_app(hooks), "fails" if signal == "handler_failed" else "works"
    client, sent = app.test_client(), getattr(signals, signal)
    with sent.connected_to(subscriber, app), caplog.at_level(logging.ERROR, "flask_hooks"):
        response = generic_post(client, {"id": "e1", "type": kind}, Authorization="Bearer tok-8e1f")
    assert response.status_code == (500 if kind == "fails" else 200)
    assert f"a subscriber of {sent.name} raised" in caplog.text
    assert "subscriber saw [redacted] and [redacted]" in caplog.text
    assert SECRET not in caplog.text and "tok-8e1f" not in caplog.text
