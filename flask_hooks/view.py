"""The thin Flask layer: size check, read the bytes once, Outcome -> Response.

Outcomes become responses in one place, :func:`flask_hooks.core.answer.answer`, which the
view only turns into a Flask response.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable
from typing import Any, NoReturn

from flask import Flask, Request, Response, current_app, has_request_context, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wsgi import get_content_length

from . import signals
from .core.answer import answer
from .core.errors import BodyTooLarge, PayloadError
from .extension import HOST_ARG, Receiver, get_state, rule_host
from .handler_reply import run
from .stores.memory import MemoryStore

log = logging.getLogger("flask_hooks")
_SLASHES = re.compile("//+")
#: The dashboard's blueprint (flask_hooks.dashboard), by name: its forms check their own token.
DASHBOARD = "hooks_dashboard"


def add_url_rules(app: Flask, receiver: Receiver) -> None:
    """Route the URL with and without a trailing slash, never redirecting.

    Senders count a 3xx as a failure (some as a permanent one), so neither
    the slash nor doubled slashes may produce a redirect.
    """
    base = receiver.settings.url.rstrip("/")
    rules = [base, base + "/"] if base else ["/"]
    state = get_state(app)
    host = rule_host(app)
    for suffix, rule in zip(("", ".slash"), rules, strict=False):
        endpoint = f"flask_hooks.{receiver.name}{suffix}"
        state.endpoints[endpoint] = receiver
        app.add_url_rule(
            rule,
            endpoint=endpoint,
            view_func=receive,
            methods=["POST"],
            host=host,
            strict_slashes=False,
            merge_slashes=False,
            provide_automatic_options=False,
        )
    if host is not None and _this_host not in app.url_default_functions.get(None, ()):
        app.url_defaults(_this_host)
    first = app.before_request_funcs.setdefault(None, [])
    if read_first not in first:
        first.insert(0, read_first)  # before the app's own hooks, those registered earlier too
    exempt_from_csrf(app)


def _this_host(endpoint: str, values: dict[str, Any]) -> None:
    """``url_for`` a receiver on an app that matches hosts: the request's host, as the
    dashboard's links have (its rules take any host, so url_for needed one)."""
    if endpoint.startswith("flask_hooks.") and has_request_context():
        values.setdefault(HOST_ARG, request.host)


def exempt_from_csrf(app: Flask) -> None:
    """Deliveries carry a signature, not a form token: exempt them from Flask-WTF, and the
    dashboard's pages, whose forms carry a token of their own (Flask-WTF took that for its
    own and refused every replay).

    ``CSRFProtect`` checks every POST in a ``before_request`` hook and keeps
    its exemptions by view and blueprint name. Initialised before us, it is in
    ``app.extensions["csrf"]`` now; initialised after, its hook runs after
    ours, so ours exempts the views on the first request.
    """
    csrf = app.extensions.get("csrf")
    if csrf is not None and callable(getattr(csrf, "exempt", None)):
        csrf.exempt(f"{receive.__module__}.{receive.__name__}")
        dashboard = app.blueprints.get(DASHBOARD)
        if dashboard is not None:
            csrf.exempt(dashboard)
    elif _late_csrf_exempt not in app.before_request_funcs.get(None, ()):
        app.before_request(_late_csrf_exempt)


def _late_csrf_exempt() -> None:
    """Runs at the app's first request (extensions are set up by then), then removes itself.

    Exempt first: a request running at the same moment that no longer
    finds this hook must find the views exempt already.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if "csrf" in app.extensions:
        exempt_from_csrf(app)
    # A new list: Flask is iterating over the current one right now.
    app.before_request_funcs[None] = [f for f in app.before_request_funcs[None] if f is not _late_csrf_exempt]


#: Where :func:`read_first` leaves the receiver and its body (or why it could not be read).
_BODY = "flask_hooks.body"


def read_first() -> Response | None:
    """Read a delivery's body before the app's other ``before_request`` hooks run.

    A hook that reads ``request.form``, ``request.values`` or
    ``request.get_json()`` would otherwise consume the body first: werkzeug
    keeps no bytes of a parsed form, and an input the server terminates
    (gunicorn's) is read once, so the signature was checked over nothing.
    The first of the app's ``before_request`` hooks, it runs for every
    request of the app, so other requests return at once. (A URL value
    preprocessor would run earlier still, but Flask looks up the request's
    endpoint and view arguments through its proxies to call one: about 20k
    instructions on every request, 4 % of a delivery.)

    A request that found no view (a 404, a 405) has no endpoint: see
    :func:`_refused_method`.
    """
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    endpoint = req.endpoint
    if endpoint is None:
        if not _routed_merged(req):
            return _refused_method(req)
        endpoint = req.endpoint or ""
    if not endpoint.startswith("flask_hooks."):
        return None
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    receiver = get_state(app).endpoints.get(endpoint)
    if receiver is not None:
        req.environ[_BODY] = receiver, _take_body(app, req, receiver.settings.max_body)
    return None


def _routed_merged(req: Request) -> bool:
    """Route a path with doubled slashes inside (``/webhooks//stripe``) to its receiver.

    Our rules do not merge slashes (werkzeug would answer a redirect, which
    senders count as a failure), so such a path found no rule: a 404, which
    an app's 404 handler may turn into a redirect, or a page answered 200
    that tells the sender the delivery was taken. Matched again with the
    slashes merged, as Flask matches a request; other paths are the app's.
    """
    if req.method != "POST" or "//" not in req.path or not isinstance(req.routing_exception, NotFound):
        return False
    matched = _receiver_rule(req)
    if matched is not None:
        req.url_rule, req.view_args, req.routing_exception = matched[0], dict(matched[1]), None
    return matched is not None


def _receiver_rule(req: Request) -> tuple[Any, Any] | None:
    """The receiver's rule (and view arguments) a POST to this path, its slashes merged,
    reaches; None when it reaches another view, or none."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    adapter = app.create_url_adapter(req)
    try:
        # A request always gets an adapter: create_url_adapter is None only without one.
        rule, args = adapter.match(_SLASHES.sub("/", req.path), method="POST", return_rule=True)  # type: ignore[union-attr]
    except HTTPException:
        return None
    return (rule, args) if rule.endpoint in get_state(app).endpoints else None


def _refused_method(req: Request) -> Response | None:
    """Every method but POST at a receiver's URL: our JSON 405, not werkzeug's HTML page.

    Werkzeug answers a method no rule at the path lists (``PUT``, but also
    ``PROPFIND`` or a made-up verb) with its routing error, which Flask
    raises only after the ``before_request`` hooks: so a rule listing
    methods cannot cover them all, and this check can. A method another
    view of the app serves at the path (a page at ``GET /webhooks``, added
    before or after the receiver) reaches that view and never gets here.
    """
    error = req.routing_exception
    if not isinstance(error, MethodNotAllowed) or "POST" not in (error.valid_methods or ()):
        return None
    # Allow names every method the URL serves (RFC 9110), a page the app has there too.
    return refuse(error.valid_methods or ()) if _receiver_rule(req) is not None else None


def receive(**_host: str) -> Response:
    """The view of every receiver (which one: the endpoint); the core does the rest.

    A plain module-level function, so extensions that name views
    (Flask-WTF's ``CSRFProtect`` builds ``module.name``) can see it. On an
    app that matches hosts its rules pass the host (:func:`rule_host`).
    """
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    taken = req.environ.pop(_BODY, None)
    if taken is None:  # dispatched without read_first (the app's hook list was replaced)
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        receiver = get_state(app).endpoints[req.endpoint or ""]
        taken = receiver, _take_body(app, req, receiver.settings.max_body)
    receiver, body = taken
    if req.environ.get("wsgi.multiprocess") and isinstance(receiver.store, MemoryStore):
        receiver.store.shared_by_processes()
    if isinstance(body, bytes):
        outcome = receiver.pipeline.process(req.headers, body, run=run, notify=_notify)
    else:
        outcome = receiver.pipeline.refuse(body, notify=_notify)
    status, headers, data = answer(outcome, receiver.provider)
    response = Response(data, status=status, content_type=headers[0][1])
    for name, value in headers[1:]:  # Content-Type comes first; then Retry-After, a handler's own
        response.headers.add(name, value)
    return response


def _notify(name: str, **kwargs: Any) -> None:
    """Send one of our signals, with the app as sender, if anyone listens."""
    signal = signals.by_name[name]
    if signal.receivers:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.send_safely(signal, app, lambda: _credentials(app, kwargs), **kwargs)


def _credentials(app: Flask, kwargs: dict[str, Any]) -> list[str]:
    """What a raising subscriber's logged traceback must not show (asked only then)."""
    return get_state(app).receivers[kwargs["receiver"]].credentials(kwargs.get("event"), request.headers)


def _take_body(app: Flask, req: Request, limit: int) -> bytes | BodyTooLarge | PayloadError:
    """The body, or the refusal to answer instead (413, or 400 for a short body).

    A body that breaks off or is badly framed makes the server's input
    raise its own error (gunicorn's ``NoMoreData`` or ``InvalidChunkSize``
    for chunked bodies, werkzeug's ``ClientDisconnected``): a 400 like
    other bad input, never a 500.
    """
    lift_app_limit(app, req, limit)
    try:
        return _read_body(req, limit)
    except (BodyTooLarge, PayloadError) as exc:
        return exc
    except Exception as exc:
        log.info("request body could not be read (%s): answered 400", type(exc).__name__)
        return PayloadError("body cut short or badly framed")


def _read_body(req: Request, limit: int) -> bytes:
    """The body, from the WSGI input itself; the 413 from Content-Length before reading,
    or while reading a body without one, which is read to ``limit + 1``.

    Read as PEP 3333 allows: up to Content-Length, or to the end of an input
    the server terminates (gunicorn's, also for chunked bodies); with neither,
    nothing may be read. Werkzeug's own reading path (its limited stream, its
    limit read through the app proxy) cost more than the rest of a delivery's
    receipt. The input is then replaced by the bytes read, so whatever reads the
    request later (a handler's ``request.get_data()``) reads the same body. A
    body shorter than its Content-Length is a 400.
    """
    environ = req.environ
    length = get_content_length(environ)  # from the environ: no headers object built
    if length is not None and length > limit:
        raise BodyTooLarge()
    cached = req.__dict__.get("_cached_data")  # a get_data() before this hook: werkzeug kept it
    if isinstance(cached, bytes):
        if len(cached) > limit:
            raise BodyTooLarge()
        return cached if length is None or len(cached) == length else _read_too_early(req)
    if length is None and not environ.get("wsgi.input_terminated"):
        if environ.get("HTTP_TRANSFER_ENCODING"):  # a body is there, which PEP 3333 lets no one read
            log.error(
                "a chunked delivery to %s has neither Content-Length nor wsgi.input_terminated: the"
                " server gives no way to read it (WSGI under an ASGI adapter?); serve the app with"
                " a WSGI server (gunicorn, waitress) or one that terminates the input",
                req.path,
            )
            raise PayloadError("chunked body the server does not pass on")
        return b""
    # Read to the length or the limit, not in one read sized by the limit:
    # gunicorn allocated a buffer that large. Short reads are allowed by WSGI.
    stream = environ["wsgi.input"]
    want = limit + 1 if length is None else length
    body: bytes = stream.read(want)
    if len(body) < want and body:
        chunks = [body]
        size = len(body)
        while size < want and (chunk := stream.read(want - size)):
            chunks.append(chunk)
            size += len(chunk)
        body = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(body)
    if len(body) > limit:
        raise BodyTooLarge()
    if "stream" in req.__dict__ and (len(body) != length if length is not None else not body):
        _read_too_early(req)  # werkzeug's stream read it first, and kept nothing (a parsed form)
    if length is not None and len(body) != length:
        raise PayloadError("body shorter than Content-Length")
    return body


def _read_too_early(req: Request) -> NoReturn:
    """A 400 that says why: code run before the receiver's hook (a URL value preprocessor, a
    ``request_started`` subscriber) read the body through werkzeug, which kept none of it."""
    log.error(
        "the body of a delivery to %s was read before the receiver's before_request hook, and"
        " not kept (a form parsed by a url_value_preprocessor, a request_started subscriber or"
        " a hook put before the receiver's): have that code skip the receiver's URL",
        req.path,
    )
    raise PayloadError("body read before the receiver")


def lift_app_limit(app: Flask, req: Request, limit: int) -> None:
    """``max_body`` is this URL's limit, not the app's ``MAX_CONTENT_LENGTH``.

    The receiver reads the input itself, but the app's hooks and the handlers
    that read the request after it go through werkzeug, whose smaller app
    limit would refuse a body ``max_body`` allows with its HTML 413, which no
    signal or log line reports. It is raised to one byte over ``max_body``.
    Read from the config, which is what the request's limit is until a view
    sets it.
    """
    app_limit = app.config.get("MAX_CONTENT_LENGTH")
    if app_limit is not None and app_limit <= limit:
        req.max_content_length = limit + 1


def refuse(allowed: Iterable[str] = ()) -> Response:
    """The answer to every method but POST at a receiver's URL: a JSON 405, like every other answer.

    ``Allow`` lists POST and ``allowed``, the methods other views serve at the URL.
    """
    body = json.dumps({"status": "method not allowed", "reason": "deliveries are POSTed"})
    allow = ", ".join(sorted({"POST", *allowed}))
    return Response(body, status=405, headers={"Allow": allow}, mimetype="application/json")
