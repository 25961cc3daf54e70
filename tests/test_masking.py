"""Credentials never reach a page, a log line or the CLI (CONTRACT section 6).

Refused bodies keep an excerpt with the provider's fields masked however
the body spells them; store URLs are shown without their password; the
settings' repr holds no secret.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import pytest
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.core import inbox
from flask_hooks.core.attempts import error_text
from flask_hooks.core.errors import ConfigError
from flask_hooks.core.inbox import EXCERPT, PARSED, READ, excerpt, mask_excerpt, mask_text
from flask_hooks.core.scrub import REDACTED, scrub
from flask_hooks.providers import MAX_DEPTH, Narada
from flask_hooks.stores.url import masked_url, open_store

MakeApp = Callable[..., Flask]
TOKEN = "LEGACYTOKEN123"
BODY_SECRET = "BODY-SECRET-456"
SLACK = ("token",)
NARADA = ("secret",)


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["hooks", *args])


def logged(hooks: Hooks, app: Flask) -> str:
    """The excerpt of the one refused request in the receiver's log."""
    receiver = hooks.receiver(app)
    [line] = receiver.store.deliveries(receiver.ns)
    assert line.status in {"rejected", "invalid"}
    return line.excerpt


INTERACTIVE = {"type": "block_actions", "token": TOKEN, "team": {"id": "T1"}, "trigger_id": "1.2"}
SLACK_FORMS = {
    "slash command": f"token={TOKEN}&team_id=T1&command=%2Fdeploy&text=now".encode(),
    "interactivity": b"payload=" + quote_plus(json.dumps(INTERACTIVE, separators=(",", ":"))).encode(),
    "encoded key": f"%74oken={TOKEN}&team_id=T1".encode(),
}


@pytest.mark.parametrize("body", SLACK_FORMS.values(), ids=SLACK_FORMS.keys())
def test_a_refused_slack_form_keeps_no_token(make_app: MakeApp, body: bytes) -> None:
    hooks = Hooks(store="memory://", provider="slack", secret="slack-signing-secret")
    app = make_app(hooks)
    headers = {
        "X-Slack-Signature": "v0=" + "0" * 64,
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert app.test_client().post("/webhooks", data=body, headers=headers).status_code == 401
    shown = logged(hooks, app)
    assert TOKEN not in shown and "[redacted]" in unquote_plus(shown)
    assert "T1" in unquote_plus(shown)  # the rest stays, to tell the request apart
    out = run(app, "deliveries", "--json").stdout
    assert TOKEN not in out and "[redacted]" in unquote_plus(json.loads(out)["excerpt"])


def test_a_json_key_spelled_with_escapes_is_masked(make_app: MakeApp) -> None:
    hooks = Hooks(store="memory://", provider=Narada(token="tok-123", secret=BODY_SECRET))
    app = make_app(hooks)
    body = b'{"requestId": "r1", "\\u0073ecret": "' + BODY_SECRET.encode() + b'"}'
    response = app.test_client().post("/webhooks", data=body, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert logged(hooks, app) == '{"requestId": "r1", "secret": "[redacted]"}'
    assert BODY_SECRET not in run(app, "deliveries", "--json").stdout


def test_a_delivery_nested_as_deep_as_accepted_is_shown_masked(make_app: MakeApp) -> None:
    """Masking copied the payload recursively, two frames a level: a Narada delivery
    nested 495 deep was received, then its dashboard page was a 500 and ``show`` a
    RecursionError."""
    hooks = Hooks(store="memory://", provider=Narada(token="tok-123", secret=BODY_SECRET))
    app = make_app(hooks)
    arrays = MAX_DEPTH - 2  # the envelope and the secret's object
    deep = "[" * arrays + "]" * arrays
    inner = {"secret": BODY_SECRET}
    envelope = {"requestId": "r-deep", "status": "success", "secret": BODY_SECRET, "o": inner}
    body = json.dumps(envelope).encode()[:-2] + f', "x": {deep}}}}}'.encode()
    headers = {"Authorization": "Bearer tok-123", "Content-Type": "application/json"}
    assert app.test_client().post("/webhooks", data=body, headers=headers).status_code == 200
    shown = hooks.inbox(app).get("r-deep:success").shown_payload()
    assert shown["secret"] == shown["o"]["secret"] == REDACTED
    for args in (("show", "r-deep:success"), ("show", "r-deep:success", "--json")):
        result = run(app, *args)
        assert result.exit_code == 0, result.output[-500:]
        assert BODY_SECRET not in result.stdout and REDACTED in result.stdout


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {"items": [{"secret": "BODY-SECRET-456"}]}}',  # at any depth
        b'{"note": "{\\"secret\\": \\"BODY-SECRET-456\\"}", "id": 1}',  # JSON inside a string
        b'{"\\u0073ecret": "BODY-SECRET-456", "id": "evt_1"',  # cut: not JSON any more
        b'{"id": "evt_1", "secret": "BODY-SECRET-456\\',  # cut after a backslash
        b'{"secret": {"value": "BODY-SECRET-456"}, "id": ',  # an object value, cut
        b'{"\\u0073ecret"  :  "BODY-SECRET-456' + b"x" * 2000,  # longer than is ever read
        b'{"note": "{\\"\\\\u0073ecret\\": \\"BODY-SECRET-456\\"}"}',  # an escaped key, in a string
    ],
)
def test_json_credentials_are_masked_however_nested_or_cut(body: bytes) -> None:
    shown = excerpt(body, NARADA)
    assert "BODY-SECRET" not in shown and "[redacted]" in shown
    assert len(shown) <= EXCERPT + 3
    older = excerpt(body)  # a line logged before the field was declared
    assert "BODY-SECRET" in older and "BODY-SECRET" not in mask_excerpt(older, NARADA)


@pytest.mark.parametrize("body", SLACK_FORMS.values(), ids=SLACK_FORMS.keys())
def test_the_cli_masks_form_lines_logged_unmasked(body: bytes) -> None:
    older = excerpt(body)
    assert TOKEN in unquote_plus(older)
    again = mask_excerpt(older, SLACK)
    assert TOKEN not in unquote_plus(again)
    assert again == excerpt(body, SLACK)  # one masking, wherever it runs


def test_an_excerpt_without_credentials_is_kept_as_sent() -> None:
    body = b'{"id":"evt_1",  "type": "x"}'
    assert excerpt(body, NARADA) == excerpt(body) == body.decode()
    assert mask_excerpt('{"secret": "x"}', ()) == '{"secret": "x"}'
    assert mask_excerpt("\\x", NARADA) == "[redacted]"  # not an excerpt we wrote: none of it


# The work on a refused body is bounded ------------------------------------------

MIB4 = 4 << 20
Work = dict[str, list[int]]


class Unread(bytes):
    """A body that must never be decoded whole (a slice of it is plain bytes)."""

    def decode(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"{len(self)} bytes decoded whole")


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    """The sizes of the text each JSON parse and each loose (regex) pass was given."""
    seen: Work = {"json": [], "loose": []}

    def loads(text: str) -> Any:
        seen["json"].append(len(text))
        return json.loads(text)

    loose = inbox._mask_loose

    def counted(text: str, names: frozenset[str]) -> str:
        seen["loose"].append(len(text))
        return loose(text, names)

    monkeypatch.setattr(inbox, "json", SimpleNamespace(loads=loads, dumps=json.dumps))
    monkeypatch.setattr(inbox, "_mask_loose", counted)
    return seen


HOSTILE = {
    "cut inside the value": b'{"id": "evt_1", "secret": "BODY-SECRET-456' + b"S" * MIB4 + b'"}',
    "escaped key, cut": b'{"id": 1, "\\u0073ecret" : "BODY-SECRET-456' + b"\\" * MIB4,
    "object value": b'{"secret": {"v": "BODY-SECRET-456", "w": "' + b"[" * MIB4,
    "many keys": b'{"secret": "BODY-SECRET-456", ' + b'"secret": 1, ' * (MIB4 // 13) + b"}",
    "quotes": b'{"secret": "BODY-SECRET-456", "a": "' + b'\\"' * (MIB4 // 2) + b'"}',
    "deep": b'{"secret": "BODY-SECRET-456", "a": ' + b"[" * MIB4,
    "not UTF-8": b'{"secret": "BODY-SECRET-456\xff' + b"\xff" * MIB4,
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_long_refused_body_is_never_parsed_or_scanned_whole(work: Work, body: bytes) -> None:
    shown = excerpt(Unread(body), NARADA)
    assert "BODY-SECRET" not in shown and "[redacted]" in shown and shown.endswith("...")
    assert all(n <= PARSED for n in work["json"]) and work["loose"] and max(work["loose"]) <= READ


@pytest.mark.parametrize("body", SLACK_FORMS.values(), ids=SLACK_FORMS.keys())
def test_a_long_refused_form_is_masked_as_far_as_it_is_read(work: Work, body: bytes) -> None:
    long = body + b"&pad=" + b"x" * MIB4
    shown = excerpt(Unread(long), SLACK)
    text = unquote_plus(shown)
    assert TOKEN not in text and "[redacted]" in text and "T1" in text
    # a form re-encodes what it masked (":" as "%3A"): a few times what was read, never the body
    assert all(n <= PARSED for n in work["json"]) and max(work["loose"]) <= 4 * READ


@pytest.mark.parametrize("at", [READ - 30, READ - 5, READ - 1])
def test_a_credential_cut_where_the_read_ends_is_hidden(at: int) -> None:
    """The cut lands in the value (or between key and value): the loose pass hides what is read."""
    head = b'{"id": "evt_1", '
    for key in (b'"secret"', b'"\\u0073ecret"'):
        start = head + key + b': "' + b"SECRET" * 200
        body = start[:at] + b"S" * (PARSED + 1)
        shown = excerpt(body, NARADA)
        assert "SECRET" not in shown and len(shown) <= EXCERPT + 3
    form = b"team_id=T1&token=" + b"LEGACY" * 200
    shown = excerpt(form[:at] + b"x" * (PARSED + 1), SLACK)
    assert "LEGACY" not in shown and "T1" in shown
    inner = b"payload=" + quote_plus('{"type": "x", "token": "' + "LEGACY" * 400).encode()
    shown = excerpt(inner[:at] + b"x" * (PARSED + 1), SLACK)
    assert "LEGACY" not in unquote_plus(shown)


def test_a_small_json_body_is_still_parsed_whole(work: Work) -> None:
    body = json.dumps({"pad": "x" * 1000, "data": {"secret": BODY_SECRET}, "id": "evt_1"}).encode()
    assert len(body) <= PARSED
    shown = excerpt(body, NARADA)
    assert BODY_SECRET not in shown and shown.startswith('{"pad": "xxx') and work["json"] == [len(body)]


def test_mask_text_parses_no_long_text(work: Work) -> None:
    text = '{"secret": "BODY-SECRET-456", "pad": "' + "x" * MIB4 + '"}'
    assert "BODY-SECRET" not in mask_text(text, NARADA)
    assert work["json"] == []


# Store URLs and settings -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2pw@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:hunter2pw@host/db", "postgresql://user:***@host/db"),
        ("rediss://user:p@ss/w#rd@host:6380/1", "rediss://user:***@host:6380/1"),
        ("unix://:hunter2pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://host:6379/0?password=hunter2pw&key_prefix=x", "redis://host:6379/0?password=***&key_prefix=x"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("sqlite:///flask_hooks.sqlite3", "sqlite:///flask_hooks.sqlite3"),
        # an "@" after the host is no password's end
        ("redis://localhost:6379/0?client_name=a@b", "redis://localhost:6379/0?client_name=a@b"),
        ("redis://localhost:6379?client_name=a@b", "redis://localhost:6379?client_name=a@b"),
        ("redis://localhost/0?client_name=a:b@c", "redis://localhost/0?client_name=a:b@c"),
        ("redis://[::1]:6379/0?client_name=a@b", "redis://[::1]:6379/0?client_name=a@b"),
        ("redis://:pw@host:6379/0?client_name=a@b", "redis://:***@host:6379/0?client_name=a@b"),
        ("postgresql://u:p@ss@h/db?application_name=x@y", "postgresql://u:***@h/db?application_name=x@y"),
        ("unix://:pw@/run/r.sock?db=0&client_name=a@b", "unix://:***@/run/r.sock?db=0&client_name=a@b"),
        ("redis://u:p#w@host/0?client_name=a@b", "redis://u:***@host/0?client_name=a@b"),
        ("redis://h:6379/0?client_name=a@b&password=pw", "redis://h:6379/0?client_name=a@b&password=***"),
        # a password holding "@", "/", "?", "#" or digits is hidden whole
        ("redis://user:pw@[::1]:6379/0", "redis://user:***@[::1]:6379/0"),
        ("redis://user:8/Kx@host/0", "redis://user:***@host/0"),
        ("redis://user:1234@host", "redis://user:***@host"),
        ("redis://user:p?w@d@host/0", "redis://user:***@host/0"),
        ("redis://user:p@w?d@host/0", "redis://user:***@host/0"),
        ("redis://user:p@w?d=x@host", "redis://user:***@host"),
        ("redis://user:6379/0?a=b@host:6380/1", "redis://user:***@host:6380/1"),
        ("redis://user:@host", "redis://user:***@host"),
        # unsure: too much is hidden, never the password
        ("redis://:p@ss@host?client_name=a@b", "redis://:***@b"),
        ("redis://localhost:6379/0#a@b", "redis://localhost:***@b"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.parametrize(
    "url", ["redis://:hunter2pw@127.0.0.1:1/0", "postgresql+psycopg://user:hunter2pw@127.0.0.1:1/hooks"]
)
def test_routes_show_the_store_without_its_password(make_app: MakeApp, url: str) -> None:
    app = make_app(Hooks(store=url))
    out = run(app, "routes").output
    assert "hunter2pw" not in out and f"store={masked_url(url)}" in out


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg:///hooks?host=/tmp&user=u&password=hunter2pw",
        "postgresql+psycopg:///hooks?sslpassword=hunter2pw",
        "postgresql+psycopg://u:p@hunter2pw@127.0.0.1/hooks",
    ],
)
def test_the_sql_stores_repr_shows_no_password(url: str) -> None:
    # SQLAlchemy's hide_password missed a password in the query, and all after an '@' in it.
    pytest.importorskip("sqlalchemy")
    from flask_hooks.stores.sql import SqlStore

    store = SqlStore(url)
    try:
        assert "hunter2pw" not in repr(store) and "***" in repr(store)
    finally:
        store.close()


def test_a_store_url_error_names_the_url_without_its_password(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as error:
        open_store("sqlite://user:hunter2pw@host/hooks.db", instance_path=str(tmp_path))
    assert "hunter2pw" not in str(error.value) and "user:***@host" in str(error.value)


def test_the_settings_repr_holds_no_secret(make_app: MakeApp) -> None:
    hooks = Hooks(secret=["new-secret-1", "old-secret-2"], store="redis://:hunter2pw@127.0.0.1:1/0")
    settings = hooks.receiver(make_app(hooks)).settings
    shown = repr(settings)
    assert "secret-1" not in shown and "secret-2" not in shown and "hunter2pw" not in shown
    assert "secrets=<2 hidden>" in shown and "store='redis://:***@127.0.0.1:1/0'" in shown


def test_a_redis_url_error_names_the_url_without_its_password(tmp_path: Any) -> None:
    pytest.importorskip("redis")
    with pytest.raises(ConfigError) as error:
        open_store("redis://:hunter2pw@127.0.0.1:1/0?allow_eviction=yes", instance_path=str(tmp_path))
    assert "hunter2pw" not in str(error.value) and "allow_eviction" in str(error.value)


def test_the_receiver_config_repr_holds_no_key(make_app: MakeApp) -> None:
    hooks = Hooks(provider="itsdangerous", secret="its-dangerous-secret", store="memory://")
    config = hooks.receiver(make_app(hooks)).pipeline.config
    assert "its-dangerous-secret" not in repr(config)


# Secrets in tracebacks ----------------------------------------------------------

#: A credential every quoting spells differently; "Zq" survives each of them.
QUOTED = "Zq'\"\\\n\t\u00e9\u20ac\U0001f600\x01 /+&=%Zq"
SPELLED = {
    "raw": QUOTED,
    "repr": repr(QUOTED),
    "ascii": ascii(QUOTED),
    "repr, other quote": repr('x"' + QUOTED),
    "repr in a container": repr({"secret": QUOTED}),
    "json": json.dumps(QUOTED),
    "json, not ascii": json.dumps(QUOTED, ensure_ascii=False),
    "quote_plus": quote_plus(QUOTED),
    "quote": quote(QUOTED, safe=""),
    "repr of json": repr(json.dumps({"secret": QUOTED})),
    "json of repr": json.dumps(repr(QUOTED)),
    "quote_plus of json": quote_plus(json.dumps(QUOTED)),
    # Encoders that write percent-escapes in lower case.
    "quote_plus, lower case": quote_plus(QUOTED).lower().replace("zq", "Zq"),
    # Slack's and PHP's JSON escape the slashes of a response_url.
    "json, slashes escaped": json.dumps(QUOTED).replace("/", "\\/"),
    "quote_plus of json, slashes escaped": quote_plus(json.dumps(QUOTED).replace("/", "\\/")),
}


@pytest.mark.parametrize("spelled", SPELLED.values(), ids=SPELLED.keys())
def test_scrub_hides_a_secret_however_it_is_quoted(spelled: str) -> None:
    assert "Zq" in spelled
    shown = scrub(f"error: {spelled}!", [QUOTED, "other"])
    assert "Zq" not in shown and "[redacted]" in shown
    assert shown.startswith("error: ") and shown.endswith("!")


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_scrub_hides_a_secret_in_base64(encode: Any) -> None:
    # Basic auth, or a token a handler encoded, quoted by its exception.
    for shown in (encode(QUOTED.encode()).decode(), encode(QUOTED.encode()).decode().rstrip("=")):
        assert scrub(shown, [QUOTED]) == REDACTED and shown not in scrub(f"x {shown} y", [QUOTED])


def test_error_text_hides_a_secret_quoted_by_the_exception() -> None:
    def fail(secret: str) -> None:
        raise ValueError(json.dumps({"secret": secret}), quote_plus(secret)) from KeyError(secret)

    try:
        fail(QUOTED)
    except ValueError as exc:
        text = error_text(exc, [QUOTED])
    assert "Zq" not in text and "KeyError" in text and "ValueError" in text
    assert "[redacted]" in text


def test_scrub_hides_every_character_of_overlapping_and_short_secrets() -> None:
    assert scrub("xabcd", ["xab", "abcd"]) == "[redacted]"  # neither order leaves "cd"
    assert scrub("a b ab", ["a"]) == "[redacted] b [redacted]b"  # short: blanked all the same
    once = scrub("red: red", ["red"])
    assert once == "[redacted]: [redacted]" and scrub(once, ["red"]) == once  # markers stay whole
    assert scrub("kept", ["", "absent"]) == "kept"


def test_a_handler_exception_quoting_the_receiver_s_own_secret_is_blanked(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler may quote its settings (a misconfigured client built from them): the
    receiver's configured secrets are blanked like the delivery's credentials."""
    from flask import current_app

    from tests.conftest import SECRET, generic_post

    hooks = Hooks(store="memory://")

    @hooks.on("*")
    def misconfigured(event: Any) -> None:
        raise RuntimeError(f"signing client refused key {current_app.config['HOOKS_SECRET']!r}")

    app = make_app(hooks)
    with caplog.at_level("INFO"):
        response = generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"})
    assert response.status_code == 500
    delivery = hooks.inbox(app).get("evt_1")
    assert delivery is not None and delivery.last_error is not None
    assert "signing client refused key" in delivery.last_error.error
    shown = delivery.last_error.error + response.get_data(as_text=True) + caplog.text
    assert SECRET not in shown
    shown_cli = run(app, "show", "evt_1").output
    assert "RuntimeError" in shown_cli and SECRET not in shown_cli


@pytest.mark.parametrize("secret", ["whsec_c3RhbmRhcmQta2V5LWJ5dGVzLXh5eg==", b"raw-key-bytes-Qq9"])
def test_a_standard_webhooks_key_is_blanked_however_it_is_spelt(make_app: MakeApp, secret: Any) -> None:
    # Only the whsec_ form was blanked: a handler quoting the base64 the libraries decode, or
    # the raw key it was given as bytes, kept it in the log and the inbox.
    from flask_hooks.core.providers.standard import decode_secret

    key = decode_secret(secret)
    spellings = [base64.b64encode(key).decode(), key.decode()]
    hooks = Hooks(provider="standard-webhooks", secret=secret, store="memory://")
    app = make_app(hooks)
    receiver = app.extensions["hooks"].receivers["hooks"]
    assert all(spelled in receiver.secrets for spelled in spellings)
    for spelled in spellings:
        assert spelled not in scrub(f"ValueError: key={spelled}", receiver.secrets)
