"""flowstep: JSON.stringify reproduced from the received bytes.

``vectors/flowstep.json`` was produced by ``vectors/flowstep.js`` under
node; when node is on PATH the tests regenerate it and compare, and run a
batch of random payloads through node as well.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flask_hooks.core.errors import PayloadError, VerificationError
from flask_hooks.core.event import Headers
from flask_hooks.core.providers import FlowStep, Outgoing, _jsjson
from flask_hooks.providers import MAX_DEPTH

VECTORS = Path(__file__).parent / "vectors"
FIXTURE = json.loads((VECTORS / "flowstep.json").read_text("utf-8"))
KEY: str = FIXTURE["key"]
WIDE = (300.0, 300.0)
NODE = shutil.which("node")


def node(texts: list[str]) -> list[dict[str, str]]:
    assert NODE is not None
    proc = subprocess.run(
        [NODE, str(VECTORS / "flowstep.js")],
        input=json.dumps({"key": KEY, "texts": texts}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    vectors: list[dict[str, str]] = json.loads(proc.stdout)["vectors"]
    return vectors


def envelope(text: str, signature: str) -> bytes:
    return ('{"payload":' + text + ',"signature":"' + signature + '"}').encode("utf-8", "surrogatepass")


def verify(body: bytes, key: str = KEY) -> int:
    provider = FlowStep()
    return provider.verify(Headers({}), body, provider.keys([key]), now=0, tolerance=WIDE).secret_index


@pytest.mark.parametrize("vector", FIXTURE["vectors"], ids=lambda v: v["text"][:30])
def test_checked_in_vectors(vector: dict[str, str]) -> None:
    assert _jsjson.stringify(_jsjson.parse(vector["text"])) == vector["stringified"]
    assert verify(envelope(vector["text"], vector["signature"])) == 0


@pytest.mark.skipif(NODE is None, reason="node is not installed; the checked-in vectors were used")
def test_checked_in_vectors_match_node() -> None:
    assert node([v["text"] for v in FIXTURE["vectors"]]) == FIXTURE["vectors"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -0.0, 1.0, 1e21, 1e-7, 5e-324, 2**53 + 1, 10**25, 0.1 + 0.2, -1.5e-9])
    if kind == 2:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind in (3, 4):
        alphabet = ['"', "\\", "\n", "\x00", "\x1f", "\u2028", "\ud800", "\udfff", "é", "😀", "a", "/", "<"]
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["0", "1", "10", "2", "01", "-1", "a", "b", "", "4294967295", "4294967294", "é"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _random_text(rng: random.Random) -> str:
    value = _random_value(rng)
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    if not _utf8(text):  # raw lone surrogates cannot travel as UTF-8; escape them
        text = json.dumps(value)
    if rng.random() < 0.3:  # duplicate keys, which json.dumps never writes
        text = text.replace('{"', '{"dup": 1, "', 1).replace(', "dup"', ', "dup": 2, "dup"', 1)
    return text


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_random_payloads_match_node() -> None:
    rng = random.Random(20261123)
    texts = [_random_text(rng) for _ in range(400)]
    for expected in node(texts):
        assert _jsjson.stringify(_jsjson.parse(expected["text"])) == expected["stringified"], expected["text"]
        assert verify(envelope(expected["text"], expected["signature"])) == 0


@pytest.mark.parametrize(
    ("value", "js"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (5e-324, "5e-324"),
        (2**53 + 1, "9007199254740992"),
        (123.456, "123.456"),
        (1.5e300, "1.5e+300"),
        (float("inf"), "null"),
        (10**400, "null"),
        (-2.5e-8, "-2.5e-8"),
    ],
)
def test_number_to_string(value: float, js: str) -> None:
    assert _jsjson.stringify(value) == js


def test_property_order_and_duplicates() -> None:
    text = '{"b":1,"2":2,"a":3,"1":4,"b":5,"01":6}'
    assert _jsjson.stringify(_jsjson.parse(text)) == '{"1":4,"2":2,"b":5,"a":3,"01":6}'


def test_whitespace_and_key_order_in_the_received_bytes_are_what_counts() -> None:
    text = '{ "z" : 1 , "a" : [ 1.50 , 2e0 ] }'
    signature = node([text])[0]["signature"] if NODE else None
    expected = _jsjson.stringify(_jsjson.parse(text))
    assert expected == '{"z":1,"a":[1.5,2]}'
    ours = hashlib.sha256((expected + KEY).encode()).hexdigest()
    assert signature in (None, ours)
    assert verify(envelope(text, ours)) == 0


def test_sign_round_trips_and_the_id_is_request_and_step() -> None:
    provider = FlowStep()
    keys = provider.keys([KEY, "wsk_old"])
    request = provider.sign(Outgoing("step_c", {"n": 1.0, "s": "é\u2028"}, "mqr_1", 0), keys[1])
    verified = provider.verify(Headers(request.headers), request.body, keys, now=0, tolerance=WIDE)
    assert verified.secret_index == 1
    parsed = provider.parse(Headers(request.headers), request.body)
    assert (parsed.id, parsed.type) == ("mqr_1:step_c", "step_c")
    assert parsed.payload["data"] == {"n": 1, "s": "é\u2028"}
    assert request.body.startswith(b'{"payload":{"data":{"n":1,')


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"null",
        b'{"signature":"00"}',
        b'{"payload":{}}',
        b'{"payload":{},"signature":1}',
        b'{"payload":{},"signature":"\xc3\xa9"}',
        b"\xff",
        b'{"payload":NaN,"signature":"0"}',
        b'{"payload":' + b"[" * 5000 + b"]" * 5000 + b',"signature":"00"}',
        b'{"payload":{},"signature":""}',
    ],
)
def test_malformed_envelopes_are_rejected(body: bytes) -> None:
    with pytest.raises(VerificationError):
        verify(body)


@pytest.mark.parametrize(
    "payload",
    [{}, {"context": {}}, {"context": {"request_id": "r"}}, {"context": {"step_name": "s"}}, [], "x"],
)
def test_parse_needs_request_id_and_step(payload: Any) -> None:
    with pytest.raises(PayloadError):
        FlowStep().parse(Headers({}), json.dumps({"payload": payload, "signature": "0"}).encode())


def _signed_body(payload: dict[str, Any]) -> bytes:
    provider = FlowStep()
    return provider.sign(Outgoing("step_c", payload, "mqr_1", 0), provider.keys([KEY])[0]).body


@pytest.mark.parametrize(
    ("signed", "edited", "seen"),
    [
        (b"null", b"1e999", None),
        (b"null", b"-1E400", None),
        (b"3", b"3.0", 3),
        (b"3", b"3e0", 3),
        (b"3", b"30e-1", 3),
        (b"9007199254740992", b"9007199254740993", 9007199254740992),
        (b"100000000000000000000", b"1e20", 100000000000000000000),
        (b"0", b"-0", 0),
        (b"0", b"-0.0", 0),
    ],
)
def test_edits_that_still_verify_hand_the_handler_only_signed_values(
    signed: bytes, edited: bytes, seen: Any
) -> None:
    body = _signed_body({"x": json.loads(signed)})
    assert b'"x":' + signed + b"}" in body
    tampered = body.replace(b'"x":' + signed + b"}", b'"x":' + edited + b"}", 1)
    assert verify(tampered) == 0  # JavaScript's own receiver accepts it too
    value = FlowStep().parse(Headers({}), tampered).payload["data"]["x"]
    assert value == seen and type(value) is type(seen)
    assert FlowStep().parse(Headers({}), tampered).payload == FlowStep().parse(Headers({}), body).payload


@pytest.mark.parametrize("vector", FIXTURE["vectors"], ids=lambda v: v["text"][:30])
def test_checked_in_vectors_verify_and_parse_to_what_was_signed(vector: dict[str, str]) -> None:
    context = '{"context":{"request_id":"r","step_name":"s"},"v":'
    signed_text = context + vector["stringified"] + "}"
    signature = hashlib.sha256((signed_text + KEY).encode("utf-8", "surrogatepass")).hexdigest()
    body = envelope(context + vector["text"] + "}", signature)
    assert verify(body) == 0
    parsed = FlowStep().parse(Headers({}), body)
    assert parsed.payload["v"] == json.loads(vector["stringified"])
    assert json.dumps(parsed.payload["v"]) == json.dumps(json.loads(vector["stringified"]))


def test_a_deep_payload_the_sender_signed_verifies() -> None:
    """A payload as deep as the receiver takes parses, so it must also re-serialise:
    JSON.stringify took it.

    ``stringify`` once used two Python frames per level (itself and a generator) and
    answered "payload too deep" (400) to a genuine delivery half as deep as Python parses.
    """
    depth = MAX_DEPTH - 1  # arrays inside the payload's object
    text = '{"context":{"request_id":"r","step_name":"s"},"data":' + "[" * depth + "]" * depth + "}"
    signature = hashlib.sha256((text + KEY).encode()).hexdigest()
    assert verify(envelope(text, signature)) == 0
    parsed = FlowStep().parse(Headers({}), envelope(text, signature))
    assert parsed.id == "r:s"
    deeper = text.replace("[", "[[", 1).replace("]", "]]", 1)  # one level past the limit
    signature = hashlib.sha256((deeper + KEY).encode()).hexdigest()
    assert verify(envelope(deeper, signature)) == 0
    with pytest.raises(PayloadError, match="nested too deeply"):
        FlowStep().parse(Headers({}), envelope(deeper, signature))
