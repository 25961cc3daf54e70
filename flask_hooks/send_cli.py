"""``flask hooks send``: the provider's "send test event" button, from the shell.

It signs with the receiver's own provider, so what it posts is exactly
what the real sender would; ``--secret-index`` signs with an older secret
(is the rotation still accepted?) and ``--secret`` with any other one
(is a forgery refused?).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click

from .cli import cli, current_state, pick_receiver, printable
from .core.errors import HookError
from .core.event import Headers
from .core.providers.base import Outgoing
from .extension import Receiver
from .stores.url import masked_url


def default_server() -> str:
    """Where ``flask run`` listens: ``FLASK_RUN_PORT`` (and host), else port 5000."""
    host = os.environ.get("FLASK_RUN_HOST") or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address (``flask run --host ::1``), as a URL writes it
    port = os.environ.get("FLASK_RUN_PORT") or "5000"
    return f"http://{host}:{port}"


#: How much of a ``--data @FILE`` is read: ``@/dev/zero`` read until memory ran out. A body
#: larger than the receiver's ``max_body`` is the server's to refuse (413), as for a sender.
MAX_DATA_FILE = 64 << 20


def load_data(data: str | None) -> Any:
    """``--data``: inline JSON, or ``@path`` to a JSON file (or a pipe) of at most
    :data:`MAX_DATA_FILE` bytes."""
    if data is None:
        return {}
    where = "--data"
    text = data
    if data.startswith("@"):
        path = Path(data[1:])
        where = printable(str(path))
        try:
            with path.open("rb") as file:
                raw = file.read(MAX_DATA_FILE + 1)
            if len(raw) > MAX_DATA_FILE:
                message = f"{where} is larger than {MAX_DATA_FILE >> 20} MiB"
                raise click.BadParameter(message, param_hint="--data")
            text = raw.decode("utf-8")
        except OSError as exc:
            reason = exc.strerror or exc
            raise click.BadParameter(f"cannot read {where}: {reason}", param_hint="--data") from None
        except UnicodeDecodeError:
            raise click.BadParameter(f"{where} is not UTF-8 text", param_hint="--data") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{where} is not valid JSON: {exc}", param_hint="--data") from None
    except RecursionError:
        raise click.BadParameter(f"{where} is nested too deeply", param_hint="--data") from None


def target_url(receiver: Receiver, url: str | None) -> str:
    """``--url`` as given, or the receiver's path on it when it names only a server."""
    base = url or default_server()
    parts = None
    if base.isprintable() and not any(char.isspace() for char in base):  # a paste's escapes, too
        try:
            parts = urllib.parse.urlsplit(base)
            parts.port  # noqa: B018 (urllib checks the port as it reads it)
        except ValueError:
            parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise click.BadParameter(f"{printable(masked_url(base))!r} is not an http(s) URL", param_hint="--url")
    if parts.username is not None:
        raise click.BadParameter("senders post without credentials in the URL", param_hint="--url")
    if parts.path in {"", "/"}:
        return base.rstrip("/") + receiver.settings.url
    return base


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Senders do not follow redirects, so neither does ``send``: a 3xx is the answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
#: For the loopback: the environment's proxy (``http_proxy`` without a ``no_proxy``) would
#: get the forged delivery, its signature and the provider's token, meant for this machine.
_LOCAL_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def _is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``, however spelt.

    ``127.1`` and ``0x7f.1`` are what ``inet_aton`` reads, ``0.0.0.0`` and ``::`` connect
    here, ``::ffff:127.0.0.1`` is IPv4's loopback, and ``localhost.`` is fully qualified.
    Other names of this machine (``/etc/hosts``, its own host name) are not looked up.
    """
    if not host:
        return False
    name = host.rstrip(".")  # urlsplit lower-cases the host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


@cli.command("send")
@click.argument("type")
@click.option("--data", "data", metavar="JSON|@FILE", help="The payload: inline JSON or @path to a file.")
@click.option("--receiver", "receiver_name", metavar="NAME", help="Which receiver (if the app has several).")
@click.option(
    "--url", metavar="URL", help="Server or full URL to post to (default: FLASK_RUN_PORT, or 5000)."
)
@click.option("--id", "delivery_id", metavar="ID", help="Delivery id (default: a fresh one).")
@click.option(
    "--secret-index",
    type=click.IntRange(min=0),
    default=None,
    help="Sign with the Nth configured secret (0: newest).",
)
@click.option(
    "--secret", "other_secret", metavar="SECRET", help="Sign with this secret instead (try a forgery)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, max=3600, min_open=True),
    default=10.0,
    show_default=True,
    callback=lambda _ctx, _param, value: _finite(value),
    help="Seconds to wait for an answer.",
)
def send_command(
    type: str,
    data: str | None,
    receiver_name: str | None,
    url: str | None,
    delivery_id: str | None,
    secret_index: int | None,
    other_secret: str | None,
    timeout: float,
) -> None:
    """POST a correctly signed TYPE delivery to a running server.

    Signs with the receiver's provider and its newest secret, like the
    provider's "send test event" button. Prints the id the receiver will
    dedupe on, the status and the body; exits 1 when the answer is not 2xx.
    Reuse --id to see deduplication.
    """
    payload = load_data(data)
    receiver = pick_receiver(current_state(), receiver_name)
    target = target_url(receiver, url)
    delivery_id = delivery_id or f"evt_{uuid.uuid4().hex}"
    key = _key(receiver, secret_index, other_secret)
    try:
        signed = receiver.provider.sign(Outgoing(type, payload, delivery_id, int(receiver.now())), key)
        seen_as = receiver.provider.parse(Headers(signed.headers), signed.body).id
    except (HookError, ValueError, TypeError) as exc:
        raise click.ClickException(f"{receiver.provider.name} cannot sign this delivery: {exc}") from None
    request = urllib.request.Request(target, data=signed.body, headers=signed.headers, method="POST")
    try:
        status, body = _post(request, timeout)
    except http.client.HTTPException as exc:  # not HTTP (an SSH port), or cut short
        said = printable(f"{exc.__class__.__name__}: {exc}")[:200]  # `type` is the argument
        raise click.ClickException(
            f"no complete HTTP answer from {target} ({said}). Is --url the app's server and port?"
        ) from None
    except TimeoutError:  # connected and sent, then no answer (urllib wraps only connect errors)
        raise click.ClickException(
            f"{target} took the request but did not answer: timed out after {timeout:g} s (--timeout)."
            " Is a handler slow or stuck?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(
            f"could not reach {target}: {reason}. Is the app running (flask run) and is --url right?"
        ) from None
    except ValueError as exc:  # http.client refuses a header value (an id with a newline)
        raise click.ClickException(f"cannot send this request: {printable(str(exc))}") from None
    click.echo(f"POST {target}  id={printable(seen_as)}  type={printable(type)}")
    # The server's bytes (a handler's reply, a proxy's error page) never drive the terminal.
    answer = "\n".join(printable(line) for line in body.decode("utf-8", "replace").rstrip().split("\n"))
    click.echo(f"{status}  {answer}")
    if _is_duplicate(body):
        click.echo("(a duplicate: the receiver had already processed this id; nothing ran again)")
    if not 200 <= status < 300:
        raise SystemExit(1)


def _post(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    """The status and body of the answer, a 4xx or 5xx included."""
    opener = _LOCAL_OPENER if _is_loopback(urllib.parse.urlsplit(request.full_url).hostname) else _OPENER
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _finite(value: float) -> float:
    if value != value:  # NaN passes every range check
        raise click.BadParameter("must be a number of seconds", param_hint="--timeout")
    return value


def _key(receiver: Receiver, index: int | None, secret: str | None) -> Any:
    if index is not None and secret is not None:
        raise click.UsageError("give --secret-index or --secret, not both")
    if secret is not None:
        try:
            return receiver.provider.key(secret)
        except HookError as exc:
            raise click.BadParameter(exc.reason, param_hint="--secret") from None
    if not receiver.keys:
        return b""
    position, count = index or 0, len(receiver.keys)
    if position >= count:
        message = f"receiver {receiver.name!r} has {count} secret(s); use 0 to {count - 1}"
        raise click.BadParameter(message, param_hint="--secret-index")
    return receiver.keys[position]


def _is_duplicate(body: bytes) -> bool:
    try:
        return bool(json.loads(body) == {"status": "duplicate"})
    except ValueError:
        return False
