"""Values a fuzzing campaign found accepted where they break every delivery later.

Each is refused where it is given (a ConfigError at ``init_app`` or at
decoration, a 400 for a sender's), rather than being an HTML 500 on every
delivery, a handler run on every retry, or two deliveries sharing one id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app
from werkzeug.datastructures import Headers

from flask_hooks import ConfigError, Hooks
from flask_hooks.core.errors import PayloadError
from flask_hooks.core.providers import FlowStep, Narada
from pytest_hooks.delivery import SignedDelivery
from tests.conftest import generic_post

MakeApp = Callable[..., Flask]


@pytest.mark.parametrize(
    "clock", [lambda: float("nan"), lambda: float("inf"), lambda: 10**400, lambda: "now"]
)
def test_a_clock_reading_no_finite_time_is_refused_at_init_app(make_app: MakeApp, clock: Any) -> None:
    # A NaN clock found every record expired: each copy of a delivery ran its handlers.
    with pytest.raises(ConfigError, match="clock"):
        make_app(Hooks(store="memory://", clock=clock))


@pytest.mark.parametrize("clock", ["x", 5])
def test_a_clock_that_cannot_be_called_is_refused_at_init_app(make_app: MakeApp, clock: Any) -> None:
    with pytest.raises(ConfigError, match="clock must be a callable"):
        make_app(Hooks(store="memory://", clock=clock))


def test_a_clock_that_reads_the_app_is_read_at_the_first_request(make_app: MakeApp) -> None:
    # init_app runs outside any app context: such a clock cannot be read there, only later.
    hooks = Hooks(store="memory://", clock=lambda: current_app.config["NOW"])
    hooks.on("a")(lambda event: None)
    app = make_app(hooks, NOW=1_700_000_000.0)
    assert generic_post(app.test_client(), {"id": "e1", "type": "a"}).status_code == 200


def test_a_clock_that_raises_is_a_config_error(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError, match=r"clock\(\) raised TypeError"):
        make_app(Hooks(store="memory://", clock=lambda now: now))  # every delivery a 500

    def unfinished() -> float:
        raise NotImplementedError  # a RuntimeError, but no missing app context

    with pytest.raises(ConfigError, match=r"clock\(\) raised NotImplementedError"):
        make_app(Hooks(store="memory://", clock=unfinished))


def test_a_fake_clock_at_any_finite_time_is_taken(make_app: MakeApp) -> None:
    app = make_app(Hooks(store="memory://", clock=lambda: 0))
    assert app.test_client() is not None


@pytest.mark.parametrize("name", ["stripe\n", 5, "a-b", "", ["stripe"]])
def test_a_receiver_name_must_be_an_identifier(make_app: MakeApp, name: Any) -> None:
    # "$" matched before a trailing newline: "stripe\n" made the URL /webhooks/stripe\n (a 404).
    with pytest.raises(ConfigError, match="must be an identifier"):  # at Hooks(): a list is unhashable
        Hooks(name=name, store="memory://")


@pytest.mark.parametrize("url", ["/<x", "/hooks/<tenant>", "/hooks\n", "/h\x00", "/h\udcff", "/h\x7f"])
def test_a_receiver_url_must_be_a_plain_path(make_app: MakeApp, url: str) -> None:
    # werkzeug's ValueError, a UnicodeEncodeError, or a rule no request reaches.
    with pytest.raises(ConfigError, match="URL must be a plain path"):
        make_app(Hooks(url=url, store="memory://"))


def test_a_url_with_text_beyond_ascii_still_works(make_app: MakeApp) -> None:
    hooks = Hooks(url="/crochets/reçus", store="memory://")
    app = make_app(hooks)
    resp = generic_post(app.test_client(), {"id": "e1", "type": "a"}, url="/crochets/re%C3%A7us")
    assert resp.status_code == 200


@pytest.mark.parametrize("namespace", ["shop\udcff", "shop\x00", "shop\nx"])
def test_a_namespace_no_store_can_write_is_refused(make_app: MakeApp, namespace: str) -> None:
    # from_prefixed_env() turns an undecodable byte into a lone surrogate: every delivery a 500.
    with pytest.raises(ConfigError, match="HOOKS_NAMESPACE must be text"):
        make_app(Hooks(store="memory://"), HOOKS_NAMESPACE=namespace)


@pytest.mark.parametrize("path", ["a\x00.db", "a\ud800.db"])
def test_a_sqlite_path_sqlite_cannot_open_is_a_config_error(
    make_app: MakeApp, tmp_path: Path, path: str
) -> None:
    with pytest.raises(ConfigError, match="no file name the OS takes"):
        make_app(Hooks(store=f"sqlite:///{tmp_path}/{path}"))


def test_a_sqlite_path_with_undecodable_bytes_still_works(make_app: MakeApp, tmp_path: Path) -> None:
    # A Latin-1 folder's name, as os.fsdecode() gives it: sqlite3 opens it as the OS does.
    hooks = Hooks(store=f"sqlite:///{tmp_path}/caf\udce9.db")
    hooks.on("a")(lambda event: None)
    client = make_app(hooks).test_client()
    assert generic_post(client, {"id": "e1", "type": "a"}).get_json() == {"status": "received"}
    assert generic_post(client, {"id": "e1", "type": "a"}).get_json() == {"status": "duplicate"}
    assert (tmp_path / os.fsdecode(b"caf\xe9.db")).exists()


@pytest.mark.parametrize("name", ["billing\ud800", "x\ny", "nul\x00"])
def test_a_handler_name_no_store_can_record_is_refused(name: str) -> None:
    # On Redis the handler's mark raised: no release, and the handler ran again every lease.
    hooks = Hooks()
    with pytest.raises(ConfigError, match="invalid handler name"):
        hooks.on("a", name=name)(lambda event: None)


@pytest.mark.parametrize("pattern", ["a\nb", "\ud800", "a.\x00"])
def test_a_pattern_no_delivered_type_can_match_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="invalid event pattern"):
        Hooks().on(pattern)(lambda event: None)


@pytest.mark.parametrize("status", [600, 999, 10**10])
def test_a_status_http_does_not_have_is_answered_500_and_retried(make_app: MakeApp, status: int) -> None:
    runs: list[str] = []
    hooks = Hooks(store="memory://")

    @hooks.on("a")
    def handler(event: Any) -> Any:
        runs.append(event.id)
        return "busy", status

    client = make_app(hooks).test_client()
    resp = generic_post(client, {"id": "e1", "type": "a"})
    assert resp.status_code == 500  # werkzeug sent "999 UNKNOWN" as given
    assert generic_post(client, {"id": "e1", "type": "a"}).status_code == 500
    assert runs == ["e1", "e1"]  # not done: the retry runs it


@pytest.mark.parametrize(
    ("provider", "bodies"),
    [
        (
            Narada(secret="sec"),
            [
                b'{"requestId":"a:b","status":"c","secret":"sec"}',
                b'{"requestId":"a","status":"b:c","secret":"sec"}',
            ],
        ),
    ],
)
def test_two_pairs_of_fields_never_make_one_id(make_app: MakeApp, provider: Any, bodies: list[bytes]) -> None:
    runs: list[str] = []
    hooks = Hooks(store="memory://", provider=provider)

    @hooks.on("*")
    def handler(event: Any) -> None:
        runs.append(event.id)

    app = make_app(hooks)
    receiver = hooks.receiver(app)
    answers = []
    for body in bodies:
        d = SignedDelivery.forge(app, receiver, "x", body=body, timestamp=int(receiver.now()))
        answers.append(app.test_client().post(d.url, data=d.body, headers=d.headers))
    assert [a.status_code for a in answers] == [200, 400]  # not [200, 200 "duplicate"]
    assert answers[1].get_json()["reason"] == "status has a ':'"
    assert runs == ["a:b:c"]


def test_a_flowstep_request_id_with_a_colon_is_refused() -> None:
    body = b'{"payload":{"context":{"request_id":"a:b","step_name":"c"}},"signature":"x"}'
    with pytest.raises(PayloadError, match="request_id has a ':'"):
        FlowStep().parse(Headers({}), body)
    body = b'{"payload":{"context":{"request_id":"a","step_name":"b:c"}},"signature":"x"}'
    assert FlowStep().parse(Headers({}), body).id == "a:b:c"  # a step name may hold one


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_the_inbox_takes_any_whole_limit_and_refuses_times_too_large(
    make_app: MakeApp, tmp_path: Path, store: str
) -> None:
    url = f"sqlite:///{tmp_path}/h.db" if store == "sqlite" else store
    hooks = Hooks(store=url)
    hooks.on("a")(lambda event: None)
    app = make_app(hooks)
    generic_post(app.test_client(), {"id": "e1", "type": "a"})
    inbox = hooks.inbox(app)
    assert [d.id for d in inbox.query(limit=10**20)] == ["e1"]  # sqlite's OverflowError before
    for bound in ("since", "until"):
        with pytest.raises(ValueError, match=f"{bound} must be a finite time"):
            inbox.query(**{bound: 10**400})  # math.isfinite overflowed
    assert inbox.query(since=1e19) == inbox.query(since=10**30) == []  # sqlite's OverflowError for the int
    assert [d.id for d in inbox.query(until=10**30, before=(1e300, "x"))] == ["e1"]
    assert inbox.purge(older_than=10**400) == 0  # now - 10**400 overflowed
    assert inbox.purge(older_than=0) == 1
