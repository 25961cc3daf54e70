"""No malformed input raises anything but VerificationError or PayloadError."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_hooks.core.errors import PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import Provider

from .samples import NOW, Case, case_id, cases, replaced, signed

CASES = cases()
WIDE = (300.0, 300.0)

#: Values no signature, timestamp or id header should choke on.
MALFORMED = [
    "",
    " ",
    "=",
    ",",
    ",,,",
    "==,==",
    "v1=",
    "v1",
    "t=",
    "t=abc,v1=00",
    "t=,v1=",
    "sha256=",
    "sha256=zz",
    "v0=",
    "v0=zz",
    "v1,",
    "v1,!!!",
    "v1a,AAAA",
    "v2,AAAA",
    "zz",
    "00",
    "\u00e9\u00e8",
    "t=\u0663\u0663",
    "t=1e9,v1=00",
    "t=-1,v1=00",
    "t=99999999999999999999999999,v1=00",
    "x" * 10_000,
    "v1=" + "0" * 9000,
    ",".join(["v1=00"] * 2000),
    " ".join(["v1,AAAA"] * 2000),
    "Bearer",
    "Bearer ",
    "Basic abc",
    "1e400",
    "NaN",
    "inf",
    "-0",
    "0x10",
    "1.5",
    "a.b.c",
    "ey.x.y",
    "\x00",
    "\t",
]


def run(provider: Provider, headers: Headers, body: bytes, keys: tuple[bytes, ...]) -> Any:
    """What the pipeline does: verify, then parse (and the immediate reply)."""
    provider.verify(headers, body, keys, now=NOW, tolerance=WIDE)
    parsed = provider.parse(headers, body)
    provider.immediate(parsed)
    return parsed


def only_hook_errors(provider: Provider, headers: Headers, body: bytes, keys: tuple[bytes, ...]) -> None:
    with contextlib.suppress(VerificationError, PayloadError):
        run(provider, headers, body, keys)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("value", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_header_values(case: Case, value: str) -> None:
    headers, body, keys = signed(case)
    for name in case.headers:
        changed = replaced(headers, **{name: value})
        only_hook_errors(case.provider, changed, body, keys)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_signature_headers_missing_or_garbled_are_rejected(case: Case) -> None:
    headers, body, keys = signed(case)
    for name in case.auth or ():
        for value in (None, "", "zz", "x" * 10_000, "\u00e9"):
            with pytest.raises(VerificationError):
                case.provider.verify(replaced(headers, **{name: value}), body, keys, now=NOW, tolerance=WIDE)


BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"0",
    b'"x"',
    b"\xff\xfe\x00",
    b"{}",
    b'{"type":1}',
    b'{"type":null}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"NaN",
    b'{"x":Infinity}',
    b"payload=%7B",
    b"command=",
    b"a=b&c",
    b"\xef\xbb\xbf{}",
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_malformed_bodies(case: Case, body: bytes) -> None:
    headers, _, keys = signed(case)
    only_hook_errors(case.provider, headers, body, keys)
    with contextlib.suppress(PayloadError):
        case.provider.parse(headers, body)


header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(MALFORMED),
    st.builds(lambda a, b: f"{a}={b}", st.text(max_size=5), st.text(max_size=70)),
    st.lists(st.sampled_from(["t=1700000000", "v1=00", "v1=" + "ab" * 32, "v0=1", "x", ""]), max_size=8).map(
        ",".join
    ),
)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_input_raises_only_hook_errors(case: Case, data: st.DataObject) -> None:
    headers, body, keys = signed(case)
    names = [*case.headers, "Content-Type", "X-Other"]
    changes = data.draw(st.dictionaries(st.sampled_from(names), st.none() | header_values, max_size=4))
    if data.draw(st.booleans()):
        body = data.draw(
            st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
        )
    only_hook_errors(case.provider, replaced(headers, **changes), body, keys)


RESERVED = {"id", "type", "event", "action", "secret", "requestId", "status", "context", "challenge"}
scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@settings(max_examples=60, deadline=None)
@given(
    payload=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in RESERVED), json_values, max_size=4
    )
)
def test_any_signed_payload_verifies_and_parses(case: Case, payload: dict[str, Any]) -> None:
    keys = case.provider.keys(case.secrets)
    outgoing = dataclasses.replace(case.outgoing, payload=payload)
    request = case.provider.sign(outgoing, keys[-1])
    headers = Headers(request.headers)
    verified = case.provider.verify(headers, request.body, keys, now=NOW, tolerance=WIDE)
    assert verified.secret_index == len(keys) - 1
    parsed = case.provider.parse(headers, request.body)
    assert (parsed.id, parsed.type) == (case.id, case.type)
