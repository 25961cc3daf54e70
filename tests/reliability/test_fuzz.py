"""Hypothesis against every preset: mutated, junk and misrouted requests.

For each provider in the registry (read at import time, so presets added
later are covered) a validly signed delivery is mutated: bytes flipped,
body truncated or extended, headers dropped, duplicated, replaced with
unicode or binary junk or made huge, other methods and path variants.
Whatever arrives, the answer is never a 3xx or 5xx, and a handler only
ever sees a payload that was actually signed (ids travel in unsigned
headers for several schemes, so only the payload is checked).
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_hooks import Event, Hooks
from flask_hooks.core.errors import ConfigError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers.base import Outgoing, Provider
from flask_hooks.core.providers.registry import PRESETS

pytestmark = pytest.mark.slow

T0 = 1_763_900_000
SECRETS = ("whsec_" + base64.b64encode(b"fuzz-secret-0123456789abcdef!!").decode(), "fuzz-secret")
#: Schemes that authenticate the sender but not the body's integrity (a
#: shared secret echoed inside the body): the payload check cannot apply.
NO_BODY_INTEGRITY = {"narada"}
#: Set by the transport (the server computes them), not something to fuzz.
TRANSPORT = {"content-length", "transfer-encoding", "host"}
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_ids = itertools.count()


class Target:
    """One app per preset with a memory store and a frozen clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.provider: Provider = PRESETS[name]()
        self.secret, self.keys = self._secret()
        self.signed: set[str] = set()
        self.calls: list[tuple[str, Any]] = []
        hooks = Hooks(provider=name, secret=self.secret, store="memory://", clock=lambda: float(T0))

        @hooks.on("*")
        def record(event: Event) -> None:
            self.calls.append((event.id, event.payload))

        self.app = Flask(f"fuzz_{name}")
        self.app.config["TESTING"] = True
        hooks.init_app(self.app)
        self.client = self.app.test_client()

    def _secret(self) -> tuple[str, tuple[bytes, ...]]:
        for secret in SECRETS:
            try:
                return secret, self.provider.keys([secret])
            except ConfigError:
                continue
        raise AssertionError(f"no test secret suits {self.name}")

    def delivery(self) -> tuple[bytes, list[tuple[str, str]]]:
        """A fresh, validly signed delivery; its parsed identity is remembered."""
        outgoing = Outgoing("fuzz.event", {"n": next(_ids), "text": "héllo"}, f"fuzz_{next(_ids)}", T0)
        request = self.provider.sign(outgoing, self.keys[0])
        parsed = self.provider.parse(Headers(request.headers.items()), request.body)
        self.signed.add(_canonical(parsed.payload))
        return request.body, list(request.headers.items())

    def send(self, method: str, path: str, body: bytes, headers: list[tuple[str, str]]) -> int:
        before = len(self.calls)
        response = self.client.open(path, method=method, data=body, headers=headers)
        status = response.status_code
        assert not 300 <= status < 400, status
        assert status < 500, (status, response.data)
        new = self.calls[before:]
        if method != "POST":
            assert new == []
        if self.name not in NO_BODY_INTEGRITY:
            for id, payload in new:
                assert _canonical(payload) in self.signed, (id, payload)
        return status


def _canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, default=repr)


@functools.cache
def target(name: str) -> Target:
    return Target(name)


def _latin1(text: str) -> str:
    """What a WSGI server hands over for UTF-8 bytes on the wire (PEP 3333)."""
    return text.encode("utf-8").decode("latin-1")


junk_values = st.one_of(
    st.text(max_size=40).map(_latin1),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["", " ", "v1,", "sha256=", "t=,v1=", "t=1,v1=00", "v0=", "=", ",,,", "\t"]),
    st.integers(1_000, 100_000).map(lambda n: "A" * n),
).map(lambda v: v.replace("\r", "").replace("\n", ""))

header_ops = st.lists(
    st.one_of(
        st.tuples(st.just("drop"), st.integers(0, 20), st.just("")),
        st.tuples(st.just("dup"), st.integers(0, 20), junk_values),
        st.tuples(st.just("copy"), st.integers(0, 20), st.just("")),
        st.tuples(st.just("set"), st.integers(0, 20), junk_values),
        st.tuples(st.just("add"), st.sampled_from(["X-Junk", "Authorization", "Content-Type"]), junk_values),
    ),
    max_size=4,
)

body_ops = st.one_of(
    st.just(("keep", 0, b"")),
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255).map(lambda n: bytes([n]))),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(b"")),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("replace"), st.just(0), st.binary(max_size=256)),
)

methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
paths = st.sampled_from(["/webhooks", "/webhooks/", "//webhooks", "/webhooks//", "/webhooks/x", "/WEBHOOKS"])


def mutate_headers(headers: list[tuple[str, str]], ops: list[tuple[str, Any, str]]) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in headers if k.lower() not in TRANSPORT]
    for op, where, value in ops:
        if op == "add":
            out.append((where, value))
        elif out:
            i = where % len(out)
            name = out[i][0]
            if op == "drop":
                del out[i]
            elif op == "dup":
                out.append((name, value))
            elif op == "copy":
                out.append(out[i])
            else:
                out[i] = (name, value)
    return out


def mutate_body(body: bytes, op: tuple[str, int, bytes]) -> bytes:
    kind, where, data = op
    if kind == "flip" and body:
        i = where % len(body)
        return body[:i] + bytes([body[i] ^ data[0]]) + body[i + 1 :]
    if kind == "truncate" and body:
        return body[: where % len(body)]
    if kind == "append":
        return body + data
    if kind == "replace":
        return data
    return body


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_signed_delivery_is_accepted_once(name: str) -> None:
    fuzz = target(name)
    body, headers = fuzz.delivery()
    before = len(fuzz.calls)
    assert 200 <= fuzz.send("POST", "/webhooks", body, headers) < 300
    assert 200 <= fuzz.send("POST", "/webhooks/", body, headers) < 300
    assert len(fuzz.calls) == before + 1


@pytest.mark.parametrize("name", sorted(PRESETS))
@FUZZ
@given(method=methods, path=paths, hops=header_ops, bop=body_ops)
def test_mutated_deliveries(
    name: str, method: str, path: str, hops: list[tuple[str, Any, str]], bop: tuple[str, int, bytes]
) -> None:
    fuzz = target(name)
    body, headers = fuzz.delivery()
    status = fuzz.send(method, path, mutate_body(body, bop), mutate_headers(headers, hops))
    if method == "POST" and path in ("/webhooks", "/webhooks/") and not hops and bop[0] == "keep":
        assert 200 <= status < 300


@pytest.mark.parametrize("name", sorted(PRESETS))
@FUZZ
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "X-Webhook-Signature",
                    "Stripe-Signature",
                    "webhook-id",
                    "webhook-signature",
                    "X-Hub-Signature-256",
                    "X-Slack-Signature",
                    "X-Slack-Request-Timestamp",
                    "Content-Type",
                    "Authorization",
                ]
            ),
            junk_values,
        ),
        max_size=6,
    ),
    body=st.one_of(st.binary(max_size=512), st.text(max_size=200).map(str.encode)),
)
def test_junk_is_never_handled(name: str, headers: list[tuple[str, str]], body: bytes) -> None:
    fuzz = target(name)
    before = len(fuzz.calls)
    assert fuzz.send("POST", "/webhooks", body, headers) >= 400
    assert len(fuzz.calls) == before
