"""``flask hooks routes|send|deliveries`` through ``app.test_cli_runner()`` (memory:// stores).

``send`` posts to a real server on a loopback port, so the whole path
(sign -> HTTP -> verify -> dedupe -> answer) is exercised.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect

from flask_hooks import Event, Hooks
from flask_hooks.providers import Narada
from tests.conftest import generic_post
from tests.helpers import ManualClock, free_port

MakeApp = Callable[..., Flask]
Serve = Callable[[Flask], str]


def two_receivers(make_app: MakeApp) -> tuple[Flask, list[str]]:
    seen: list[str] = []
    hooks = Hooks()
    billing = Hooks(name="billing", secret="billing-secret")

    @hooks.on("resource.created", "resource.updated")
    def sync_resource(event: Event) -> None:
        seen.append(event.id)

    @hooks.on("*")
    def audit(event: Event) -> None:
        seen.append("audit")

    @billing.on("invoice.*")
    def bill(event: Event) -> dict[str, str]:
        return {"billed": event.id}

    return make_app(hooks, billing), seen


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["hooks", *args])


# routes ------------------------------------------------------------------


def test_routes_lists_receivers_handlers_and_patterns(make_app: MakeApp) -> None:
    app, _ = two_receivers(make_app)
    result = run(app, "routes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("hooks  POST /webhooks  provider=generic  secrets=1")
    assert "sync_resource  <-  resource.created, resource.updated" in result.output
    assert "audit  <-  *" in result.output
    assert any(line.startswith("billing  POST /webhooks/billing") for line in lines)
    assert "bill  <-  invoice.*" in result.output


def test_routes_says_when_a_receiver_has_no_handler(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    result = run(app, "routes")
    assert result.exit_code == 0
    assert "no handlers" in result.output


# send ----------------------------------------------------------------------


def test_send_posts_a_signed_delivery_to_a_running_server(make_app: MakeApp, serve: Serve) -> None:
    app, seen = two_receivers(make_app)
    base = serve(app)
    data = '{"data": {"object": {"id": "r1"}}}'
    first = run(app, "send", "resource.created", "--data", data, "--receiver", "hooks", "--url", base,
                "--id", "evt_cli_1")
    assert first.exit_code == 0, first.output + first.stderr
    assert "200" in first.stdout and '"received"' in first.stdout
    assert seen == ["evt_cli_1", "audit"]

    again = run(app, "send", "resource.created", "--data", data, "--receiver", "hooks", "--url", base,
                "--id", "evt_cli_1")
    assert again.exit_code == 0
    assert '"duplicate"' in again.stdout
    assert seen == ["evt_cli_1", "audit"]


def test_send_uses_the_chosen_receivers_provider_and_secret(make_app: MakeApp, serve: Serve) -> None:
    app, _ = two_receivers(make_app)
    base = serve(app)
    result = run(app, "send", "invoice.paid", "--receiver", "billing", "--url", base, "--id", "in_1")
    assert result.exit_code == 0, result.stderr
    assert f"POST {base}/webhooks/billing" in result.stdout
    assert '{"billed": "in_1"}' in result.stdout


def test_send_reads_a_payload_file_and_accepts_a_full_url(
    make_app: MakeApp, serve: Serve, tmp_path: Path
) -> None:
    app = make_app(Hooks())
    base = serve(app)
    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"data": {"n": 1}}))
    result = run(app, "send", "thing.happened", "--data", f"@{payload}", "--url", f"{base}/webhooks/")
    assert result.exit_code == 0, result.stderr
    assert '"ignored"' in result.stdout
    assert "id=evt_" in result.stdout


def test_send_exits_non_zero_when_the_server_rejects(make_app: MakeApp, serve: Serve) -> None:
    server_app = make_app(Hooks())
    base = serve(server_app)
    # The CLI's app holds another secret than the server: a real 401 comes back.
    cli_app = Flask("other", instance_path=server_app.instance_path)
    Hooks(secret="not-the-servers-secret", store="memory://").init_app(cli_app)
    result = run(cli_app, "send", "resource.created", "--url", base)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1].startswith("401")
    assert "signature mismatch" in result.stdout


def test_send_does_not_follow_redirects(make_app: MakeApp, serve: Serve) -> None:
    app = make_app(Hooks())
    app.add_url_rule("/old-hooks", "moved", lambda: redirect("/webhooks", code=308), methods=["POST"])
    base = serve(app)
    result = run(app, "send", "resource.created", "--url", f"{base}/old-hooks")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1].startswith("308  ")
    with app.app_context():
        receiver = Hooks().receiver(app)
        assert receiver.store.deliveries(receiver.ns) == []


def test_send_reports_an_unreachable_server(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    result = run(app, "send", "resource.created", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    assert "could not reach" in result.stderr
    assert "Is the app running" in result.stderr


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost.", "api.localhost", "127.0.0.1", "127.1", "0x7f.1", "0.0.0.0", "[::1]", "[::]",
     "[::ffff:127.0.0.1]"],
)
def test_send_knows_every_spelling_of_this_machine(host: str) -> None:
    """Each of these connects here; the environment's proxy would get the forged delivery."""
    from flask_hooks.send_cli import _is_loopback

    assert _is_loopback(urllib.parse.urlsplit(f"http://{host}:5000/").hostname)


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "128.0.0.1", "[::2]", "[::ffff:10.0.0.1]", "localhost.evil"]
)
def test_send_takes_other_hosts_through_the_proxy(host: str) -> None:
    from flask_hooks.send_cli import _is_loopback

    assert not _is_loopback(urllib.parse.urlsplit(f"http://{host}:5000/").hostname)


def test_send_needs_a_receiver_when_there_are_several(make_app: MakeApp) -> None:
    app, _ = two_receivers(make_app)
    result = run(app, "send", "resource.created")
    assert result.exit_code == 2
    assert "choose one with --receiver (billing, hooks)" in result.stderr


def test_send_rejects_an_unknown_receiver(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    result = run(app, "send", "x", "--receiver", "nope")
    assert result.exit_code == 2
    assert "no receiver named 'nope' (receivers: hooks)" in result.stderr


def test_send_rejects_bad_json_and_a_missing_file(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app(Hooks())
    bad = run(app, "send", "x", "--data", "{not json")
    assert bad.exit_code == 2
    assert "--data is not valid JSON" in bad.stderr
    missing = run(app, "send", "x", "--data", f"@{tmp_path / 'absent.json'}")
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr and "absent.json" in missing.stderr
    # Read to the end before: @/dev/zero until memory ran out.
    endless = run(app, "send", "x", "--data", "@/dev/zero")
    assert endless.exit_code == 2 and "/dev/zero is larger than 64 MiB" in endless.stderr


def test_send_rejects_a_url_that_is_not_http(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    result = run(app, "send", "x", "--url", "ftp://example.invalid")
    assert result.exit_code == 2
    assert "is not an http(s) URL" in result.stderr
    # Found before anything is sent: not "no complete HTTP answer", and no escape reaches the terminal.
    for url in ("http://127.0.0.1:5000/webhooks\x1b]0;TITLE\x07", "http://ex ample.com/webhooks"):
        odd = run(app, "send", "x", "--url", url)
        assert odd.exit_code == 2 and "is not an http(s) URL" in odd.stderr and "\x1b" not in odd.stderr


# deliveries ------------------------------------------------------------------


def test_deliveries_shows_the_log_with_matched_secret_and_handlers(make_app: MakeApp) -> None:
    hooks = Hooks(secret=["new-secret", "old-secret"])

    @hooks.on("resource.*")
    def sync_resource(event: Event) -> None:
        return None

    app = make_app(hooks)
    client = app.test_client()
    body = {"id": "evt_old", "type": "resource.created"}
    assert generic_post(client, body, secret="old-secret").status_code == 200
    newer = {"id": "evt_new", "type": "resource.created"}
    assert generic_post(client, newer, secret="new-secret").status_code == 200
    assert generic_post(client, body, secret="old-secret").status_code == 200
    assert generic_post(client, body, secret="wrong").status_code == 401

    result = run(app, "deliveries")
    assert result.exit_code == 0, result.stderr
    header, *lines = result.output.splitlines()
    assert header.split() == ["RECEIVED", "(UTC)", "RECEIVER", "ID", "TYPE", "STATUS", "CODE", "SECRET",
                              "MS", "HANDLERS", "REASON"]
    assert len(lines) == 4
    rejected, duplicate, new, old = (line.split() for line in lines)
    assert rejected[3:8] == ["-", "-", "rejected", "401", "-"]
    assert "signature mismatch" in lines[0]
    assert duplicate[3:8] == ["evt_old", "resource.created", "duplicate", "200", "1"]
    assert new[3:8] == ["evt_new", "resource.created", "received", "200", "0"]
    assert old[3:8] == ["evt_old", "resource.created", "received", "200", "1"]
    assert old[9].endswith("sync_resource")

    only = run(app, "deliveries", "--status", "received", "--limit", "1")
    assert only.exit_code == 0
    assert len(only.output.splitlines()) == 2
    assert "evt_new" in only.output


def test_deliveries_filters_by_receiver(make_app: MakeApp) -> None:
    app, _ = two_receivers(make_app)
    client = app.test_client()
    invoice = {"id": "in_9", "type": "invoice.paid"}
    generic_post(client, invoice, secret="billing-secret", url="/webhooks/billing")
    generic_post(client, {"id": "evt_9", "type": "resource.created"})
    both = run(app, "deliveries")
    assert "in_9" in both.output and "evt_9" in both.output
    billing = run(app, "deliveries", "--receiver", "billing")
    assert "in_9" in billing.output and "evt_9" not in billing.output
    unknown = run(app, "deliveries", "--receiver", "nope")
    assert unknown.exit_code == 2
    assert "no receiver named 'nope'" in unknown.stderr


def test_deliveries_as_json_lines(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    client = app.test_client()
    generic_post(client, {"id": "evt_j", "type": "a.b"})
    generic_post(client, {"id": "evt_j", "type": "a.b"}, secret="wrong")
    result = run(app, "deliveries", "--json")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [(x["receiver"], x["id"], x["status"], x["code"], x["secret_index"]) for x in lines] == [
        ("hooks", None, "rejected", 401, None),
        ("hooks", "evt_j", "ignored", 200, 0),
    ]
    assert lines[0]["reason"] == "signature mismatch"
    assert lines[1]["handlers"] == []


def test_deliveries_on_an_empty_log(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    result = run(app, "deliveries", "--status", "error")
    assert result.exit_code == 0
    assert result.output.strip() == "no deliveries with status 'error'"


def test_deliveries_filters_by_type_age_and_id_and_names_the_failing_handler(make_app: MakeApp) -> None:
    clock = ManualClock()
    hooks = Hooks(clock=clock)

    @hooks.on("payment.succeeded", name="billing.invoice")
    def invoice(event: Event) -> None:
        raise KeyError("customer")

    app = make_app(hooks)
    client = app.test_client()
    generic_post(client, {"id": "evt_old", "type": "payment.succeeded"})
    clock.advance(2 * 3600)
    generic_post(client, {"id": "evt_1", "type": "payment.succeeded"})
    generic_post(client, {"id": "evt_2", "type": "payments.other"})
    generic_post(client, {"id": "evt_2", "type": "payments.other"})

    recent = run(app, "deliveries", "--type", "payment.*", "--since", "1h")
    assert recent.exit_code == 0, recent.stderr
    [row] = recent.stdout.splitlines()[1:]
    assert row.split()[3:7] == ["evt_1", "payment.succeeded", "error", "500"]
    assert row.split(maxsplit=10)[10] == "billing.invoice: KeyError: 'customer'"  # HANDLERS is -
    assert len(run(app, "deliveries", "--type", "payment").stdout.splitlines()) == 3  # and subtypes
    assert len(run(app, "deliveries", "--type", "*").stdout.splitlines()) == 5
    lines = run(app, "deliveries", "--id", "evt_2", "--json").stdout.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["duplicate", "ignored"]
    [line] = run(app, "deliveries", "--id", "evt_1", "--json").stdout.splitlines()
    failure = json.loads(line)
    assert failure["failed"] == "billing.invoice" and "KeyError: 'customer'" in failure["error"]
    nothing = run(app, "deliveries", "--status", "error", "--type", "refund.*", "--since", "90s")
    assert nothing.stdout == "no deliveries with status 'error', type 'refund.*' in the last 90s\n"


def test_deliveries_refuses_an_unknown_status_and_a_malformed_duration(make_app: MakeApp) -> None:
    app = make_app(Hooks())
    status = run(app, "deliveries", "--status", "done")
    assert status.exit_code == 2
    assert "'done' is not one of 'received', 'ignored', 'duplicate', 'error', 'retry'," in status.stderr
    # The inbox's word (replay --status failed) is pointed to the log's.
    inbox_word = run(app, "deliveries", "--status", "failed")
    assert inbox_word.exit_code == 2
    assert "the log's word for an attempt whose handler failed is 'error'" in inbox_word.stderr
    since = run(app, "deliveries", "--since", "2 hours")
    assert since.exit_code == 2
    assert "Invalid value for '--since': '2 hours' is not a duration: use a number and a unit" in since.stderr


def test_deliveries_masks_credentials_in_a_refused_body(make_app: MakeApp) -> None:
    hooks = Hooks(name="narada", provider=Narada(token="the-token", secret="the-secret"))
    app = make_app(hooks)
    body = json.dumps({"requestId": "r1", "status": "completed", "secret": "the-secret"})
    refused = app.test_client().post("/webhooks/narada", data=body, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    [line] = run(app, "deliveries", "--json").stdout.splitlines()
    entry = json.loads(line)
    assert entry["reason"] == "invalid token"
    assert entry["excerpt"].startswith('{"requestId": "r1", "status": "completed", "secret": "[redacted]"')
    assert "the-secret" not in line


def test_commands_explain_a_missing_init_app(tmp_path: Path) -> None:
    from flask_hooks.cli import cli

    app = Flask("bare", instance_path=str(tmp_path))
    app.cli.add_command(cli)
    result = run(app, "routes")
    assert result.exit_code == 1
    assert "Did you forget to call 'init_app'" in result.stderr


def test_send_signs_with_an_older_or_a_wrong_secret(make_app: MakeApp, serve: Serve) -> None:
    hooks = Hooks(secret=["new-secret", "old-secret"])
    indexes: list[int] = []
    hooks.on("*")(lambda event: indexes.append(event.secret_index))
    app = make_app(hooks)
    base = serve(app)
    old = run(app, "send", "a.b", "--url", base, "--secret-index", "1")
    assert old.exit_code == 0, old.stderr
    forged = run(app, "send", "a.b", "--url", base, "--secret", "not-ours")
    assert forged.exit_code == 1 and "401" in forged.stdout
    assert indexes == [1]
    beyond = run(app, "send", "a.b", "--url", base, "--secret-index", "2")
    assert beyond.exit_code == 2 and "has 2 secret(s); use 0 to 1" in beyond.stderr
    both = run(app, "send", "a.b", "--url", base, "--secret-index", "0", "--secret", "x")
    assert both.exit_code == 2 and "not both" in both.stderr


@pytest.mark.parametrize("provider", ["standard-webhooks", "svix"])
def test_send_with_a_secret_not_in_the_providers_format_names_the_format_and_the_preset(
    make_app: MakeApp, provider: str
) -> None:
    # svix's refusal called itself standard-webhooks.
    app = make_app(Hooks(provider=provider, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    refused = run(app, "send", "a.b", "--url", "http://127.0.0.1:9", "--secret", "wrong")
    assert refused.exit_code == 2
    assert f"{provider}: a secret must be 'whsec_' followed by base64" in refused.stderr


def test_send_prints_the_id_the_receiver_dedupes_on_and_says_duplicate(
    make_app: MakeApp, serve: Serve
) -> None:
    from flask_hooks.providers import Narada

    hooks = Hooks(provider=Narada(token="tok"))
    hooks.on("*")(lambda event: None)
    app = make_app(hooks)
    base = serve(app)
    first = run(app, "send", "success", "--url", base, "--id", "req_1")
    assert first.exit_code == 0, first.stderr
    assert "id=req_1:success" in first.stdout
    again = run(app, "send", "success", "--url", base, "--id", "req_1")
    assert again.stdout.splitlines()[-1].startswith("(a duplicate")


def test_send_defaults_to_the_port_flask_run_uses(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_hooks.send_cli import default_server

    monkeypatch.setenv("FLASK_RUN_PORT", "8123")
    assert default_server() == "http://127.0.0.1:8123"
    monkeypatch.setenv("FLASK_RUN_HOST", "0.0.0.0")
    assert default_server() == "http://127.0.0.1:8123"
    monkeypatch.delenv("FLASK_RUN_PORT")
    monkeypatch.delenv("FLASK_RUN_HOST")
    assert default_server() == "http://127.0.0.1:5000"


def test_send_reaches_flask_run_on_an_ipv6_host(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """``flask run --host ::1``: the default URL needs the address in brackets."""
    import threading

    from werkzeug.serving import make_server

    from flask_hooks.send_cli import default_server

    app = make_app(Hooks())
    try:
        server = make_server("::1", 0, app)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("FLASK_RUN_HOST", "::1")
        monkeypatch.setenv("FLASK_RUN_PORT", str(server.server_port))
        assert default_server() == f"http://[::1]:{server.server_port}"
        result = run(app, "send", "resource.created")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.exit_code == 0, result.output
    assert f"POST http://[::1]:{server.server_port}/webhooks" in result.stdout


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "(BadStatusLine: SSH-2.0-OpenSSH_9.2\\r\\n)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short", "(IncompleteRead: "),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\ncut short", "(IncompleteRead: "),
        (b"HTTP/1.1 200 OK\r\n" + b"X: a\r\n" * 200 + b"\r\n", "(HTTPException: got more than 100 headers)"),
    ],
    ids=["ssh", "cut-2xx", "cut-5xx", "headers"],
)
def test_send_explains_a_server_that_does_not_answer_in_http(
    make_app: MakeApp, answer: bytes, said: str
) -> None:
    """--url pointing at another service's port, or a server that dies mid-answer."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
            # Read the rest of the request (its body may come after the first recv) until the
            # client hangs up: closing with unread bytes sends a reset, which can reach the
            # client before it has read the answer (ECONNRESET instead of what it says of it).
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(30)
            with contextlib.suppress(OSError):
                while conn.recv(65536):
                    pass

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        result = run(make_app(Hooks()), "send", "resource.created", "--url", url)
    finally:
        thread.join(5)
        listener.close()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert result.stderr.startswith(f"Error: no complete HTTP answer from {url}/webhooks {said}")


def test_send_says_it_timed_out_when_the_server_takes_the_request_and_never_answers(
    make_app: MakeApp,
) -> None:
    """A handler stuck past --timeout: it said "could not reach", and the server had been reached."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def take_and_hold() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            while conn.recv(65536):  # read the request, answer nothing, until the client hangs up
                pass

    thread = threading.Thread(target=take_and_hold, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        result = run(make_app(Hooks()), "send", "resource.created", "--url", url, "--timeout", "0.5")
    finally:
        thread.join(10)
        listener.close()
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: {url}/webhooks took the request but did not answer: timed out")
    assert "after 0.5 s (--timeout)" in result.stderr
    assert "could not reach" not in result.stderr


# found by trying to break it ------------------------------------------------------


def test_send_secret_forges_every_credential_of_a_provider_that_holds_its_own(
    make_app: MakeApp, serve: Serve
) -> None:
    """``Narada(token=..., secret=...)`` ignored the list ``keys`` was given, so ``send
    --secret WRONG`` signed with the real credentials and the "forgery" got through."""
    hooks = Hooks(provider=Narada(token="TOKSECRET123", secret="BODYSECRET456"))
    ran: list[str] = []
    hooks.on("*")(lambda event: ran.append(event.id))
    app = make_app(hooks)
    base = serve(app)
    forged = run(app, "send", "success", "--url", base, "--secret", "WRONG")
    assert forged.exit_code == 1
    assert forged.stdout.splitlines()[-1].startswith("401")
    assert ran == []
    assert run(app, "send", "success", "--url", base).exit_code == 0
    assert len(ran) == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--timeout", "nan"], "must be a number of seconds"),
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--url", "http://[::1"], "is not an http(s) URL"),
        (["--url", "http://127.0.0.1:99999"], "is not an http(s) URL"),
        (["--url", "http://user:pw@127.0.0.1:5000"], "without credentials in the URL"),
    ],
)
def test_send_refuses_bad_options_with_a_usage_error(make_app: MakeApp, args: list[str], said: str) -> None:
    result = run(make_app(Hooks()), "send", "resource.created", *args)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "Traceback" not in result.output and "pw" not in result.stderr


def test_send_explains_a_payload_file_it_cannot_use(make_app: MakeApp, tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    app = make_app(Hooks())
    for path, said in ((latin, "is not UTF-8 text"), (deep, "nested too deeply")):
        result = run(app, "send", "resource.created", "--data", f"@{path}")
        assert result.exit_code == 2, result.output
        assert said in result.stderr and "Traceback" not in result.output


def test_send_explains_an_id_no_header_can_carry_and_escapes_what_it_echoes(
    make_app: MakeApp, serve: Serve
) -> None:
    app = make_app(Hooks())
    base = serve(app)
    bad_id = run(app, "send", "resource.created", "--url", base, "--id", "a\nb")
    assert bad_id.exit_code == 1 and "cannot send this request" in bad_id.stderr
    assert "Traceback" not in bad_id.output
    odd_type = run(app, "send", "ok\nX-Evil: 1", "--url", base)
    assert "\nX-Evil" not in odd_type.stdout and "type=ok\\nX-Evil: 1" in odd_type.stdout


def test_send_escapes_the_answer_it_prints(make_app: MakeApp, serve: Serve) -> None:
    """A handler's reply (or whatever --url answers) must not drive the operator's terminal."""
    hooks = Hooks()
    hooks.on("*")(lambda event: "done\x1b]0;owned\x07\x1b[2J\r\nsecond line\u202e")
    app = make_app(hooks)
    result = run(app, "send", "resource.created", "--url", serve(app))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["200  done\\x1b]0;owned\\x07\\x1b[2J\\r", "second line\\u202e"]


def test_a_refused_body_s_excerpt_never_shows_the_receiver_s_own_secret(make_app: MakeApp) -> None:
    """A forgery may carry the real secret under a field name the provider does not mask."""
    from tests.conftest import SECRET

    app = make_app(Hooks())
    body = json.dumps({"id": "x", "webhook_secret": SECRET}).encode()
    forged = app.test_client().post("/webhooks", data=body, headers={"X-Webhook-Signature": "00"})
    assert forged.status_code == 401
    result = run(app, "deliveries", "--json")
    assert result.exit_code == 0
    [line] = [json.loads(text) for text in result.stdout.splitlines()]
    assert "webhook_secret" in line["excerpt"] and SECRET not in result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "9" * 400 + "d"], "too long"),
        (["--type", ""], "give a type or a pattern"),
        (["--type", "a\x00b"], "not valid text"),
        (["--id", "\ud800"], "not valid text"),
    ],
)
def test_deliveries_refuses_filters_that_cannot_mean_anything(
    make_app: MakeApp, args: list[str], said: str
) -> None:
    result = run(make_app(Hooks()), "deliveries", *args)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
