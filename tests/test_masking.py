"""Credentials never reach a page, a log line or the CLI (CONTRACT section 6).

Refused bodies keep an excerpt with the provider's fields masked however
the body spells them; store URLs are shown without their password; the
settings' repr holds no secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
from flask import Flask

from flask_hooks import Hooks
from flask_hooks.cli import mask_excerpt
from flask_hooks.core.errors import ConfigError
from flask_hooks.core.inbox import EXCERPT, excerpt
from flask_hooks.providers import Narada
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


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {"items": [{"secret": "BODY-SECRET-456"}]}}',  # at any depth
        b'{"note": "{\\"secret\\": \\"BODY-SECRET-456\\"}", "id": 1}',  # JSON inside a string
        b'{"\\u0073ecret": "BODY-SECRET-456", "id": "evt_1"',  # cut: not JSON any more
        b'{"id": "evt_1", "secret": "BODY-SECRET-456\\',  # cut after a backslash
        b'{"secret": {"value": "BODY-SECRET-456"}, "id": ',  # an object value, cut
        b'{"\\u0073ecret"  :  "BODY-SECRET-456' + b"x" * 2000,  # longer than is ever read
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
