"""The dashboard's pages: the list, a delivery, and the replay / forget forms.

``GET`` only reads. Replay and forget are two steps that work without
JavaScript: a ``GET`` shows what will happen and a form, whose ``POST``
(with the CSRF token) does it and redirects (303) to a page that shows
the result. The message is chosen by fixed words in the query string,
signed together with the id they are about, so a link cannot make a page
say anything else, nor claim a replay or a forget that did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from flask import current_app, has_request_context, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ..core.errors import InFlight, LeaseLost, StoreUnavailable
from ..core.inbox import STATUSES
from ..extension import HOST_ARG, Receiver, get_state
from ..inbox import Delivery, hidden
from ..stores import DedupeStore
from ..view import DASHBOARD
from . import charts, csrf, listing
from .extension import EXTENSION_KEY, HEADERS, DashboardState, PagesBlueprint
from .text import payload_text, printable, printable_lines

bp = PagesBlueprint(DASHBOARD, __name__, template_folder="templates", static_folder="static")

T = "flask_hooks_dashboard/"


class Notice(NamedTuple):
    kind: str
    text: str


def _state() -> DashboardState:
    state: DashboardState = current_app.extensions[EXTENSION_KEY]
    return state


def _receivers() -> dict[str, Receiver]:
    try:
        return dict(sorted(get_state(current_app).receivers.items()))
    except RuntimeError:  # flask_hooks not set up (yet): an empty dashboard
        return {}


def _app() -> Any:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def _page(template: str, code: int = 200, **context: Any) -> Response:
    """A rendered page. Text a sender wrote may hold a lone surrogate (a payload's
    ``"\\ud800"``, a traceback quoting it) that UTF-8 cannot encode: it is shown
    as its escape, ``\\ud800``, instead of failing the page with a 500."""
    html = render_template(T + template, **context)
    return Response(html.encode("utf-8", "backslashreplace"), code, mimetype="text/html")


def _message(text: str, status: int) -> Response:
    return _page("message.html", status, text=text, status=status)


class NotShown(Exception):
    """Ends a request with a message page (an unknown receiver or delivery, a store down)."""

    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.text, self.status = text, status


@bp.errorhandler(NotShown)
def _not_shown(exc: NotShown) -> ResponseReturnValue:
    return _message(exc.text, exc.status)


@bp.url_value_preprocessor
def _drop_host(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values:  # the host, on an app that matches hosts (PagesBlueprint): no view takes it
        values.pop(HOST_ARG, None)


@bp.url_defaults
def _this_host(endpoint: str, values: dict[str, Any]) -> None:
    if current_app.url_map.host_matching and has_request_context():
        values.setdefault(HOST_ARG, request.host)  # a link to the page's own host is a relative URL


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if _state().allow() is not True:
        return Response(_REFUSED, 403, mimetype="text/html")
    if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf.valid(request.form.get(csrf.FIELD)):
        return _message(
            "This form has expired or did not come from this dashboard, so nothing was changed."
            " Go back, reload the page and try again.",
            400,
        )
    return None


@bp.after_app_request
def _headers(response: Response) -> Response:
    # Every answer under the prefix: 403s, 404s and the stylesheet included.
    state = current_app.extensions.get(EXTENSION_KEY)
    if isinstance(state, DashboardState) and state.covers(request.path):
        response.headers.update(HEADERS)
    return response


def when(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.1f} ms"


@bp.context_processor
def _helpers() -> dict[str, Callable[..., str]]:
    return {
        "csrf_token": csrf.token,
        "when": when,
        "iso": iso,
        "ms": ms,
        "printable": printable,
        "printable_lines": printable_lines,
    }


# The list ------------------------------------------------------------------


@bp.get("/")
def index() -> ResponseReturnValue:
    receivers = _receivers()
    try:
        filters = listing.Filters.from_args(request.args, receivers)
        before = listing.Cursor.from_args(request.args)
        limit = listing.page_size(request.args)
    except listing.BadQuery as exc:
        return _message(f"Cannot show that list: {exc}.", 400)
    chosen = [r for r in receivers.values() if filters.receiver in (None, r.name)]
    found = listing.page(_app(), chosen, filters, before, limit)
    older = None
    keep: dict[str, Any] = {**filters.args(), **_limit_arg(limit)}
    if found.next is not None:
        older = url_for(".index", **{**keep, **found.next.args()})
    notice = None
    done, signed = request.args.get("done", ""), csrf.subject(request.args.get("subject", ""))
    if signed is None or signed[:2] != (done, ""):
        pass  # no forget redirected here (or the link was made up)
    elif done == "forgotten":
        notice = Notice("ok", f"Forgot {signed[3]!r}: the sender's next redelivery is processed afresh.")
    elif done == "gone":
        notice = Notice("warn", f"Nothing was kept under {signed[3]!r}.")
    return _page(
        "index.html",
        receivers=receivers,
        filters=filters,
        statuses=STATUSES,
        page=found,
        paged=before is not None,
        older=older,
        newest=url_for(".index", **keep),
        notice=notice,
        **_pictures(chosen, found.down),
    )


def _limit_arg(limit: int) -> dict[str, int]:
    return {} if limit == listing.PAGE_SIZE else {"limit": limit}


def _pictures(receivers: list[Receiver], down: list[DedupeStore]) -> dict[str, Any]:
    """The charts; ``down``: the stores that did not answer for this page already."""
    now = max((r.now() for r in receivers), default=time.time())
    windows, shares, log_down, down = [], [], [], list(down)
    for receiver in receivers:
        store = receiver.store
        if listing.is_down(store, down):
            log_down.append(receiver.name)
            continue
        try:
            log = store.deliveries(receiver.ns, limit=store.log_size)
        except StoreUnavailable as exc:
            log_down.append(receiver.name)
            listing.note_down(exc, store, down)
            continue
        window = charts.window(receiver.name, log, store.log_size, now)
        windows.append(window)
        shares.append((charts.secret_share(window, len(receiver.keys)), receiver))
    buckets = charts.hourly(windows, now)
    return {
        "chart": charts.hourly_svg(buckets, label="Attempts per hour over the last 24 hours, by outcome"),
        "totals": charts.totals(buckets),
        "outcomes": charts.OUTCOMES,
        "windows": windows,
        "partial": [w for w in windows if w.partial],
        "shares": [(share, charts.share_svg(share), receiver) for share, receiver in shares],
        "log_down": log_down,
        "now": now,
    }


# A delivery ----------------------------------------------------------------


def _find(args: Mapping[str, str]) -> tuple[Receiver, Delivery]:
    """The receiver and delivery a link or form names, or a 404 that repeats neither:
    a made-up link must not make the dashboard say what its author wrote."""
    receivers = _receivers()
    receiver = receivers.get(args.get("receiver", ""))
    if receiver is None:
        known = ", ".join(receivers) or "none"
        raise NotShown(f"There is no such receiver (this app's receivers: {known}).", 404)
    try:
        delivery = receiver.hooks.inbox(_app()).get(args.get("id", ""))
    except StoreUnavailable:
        raise NotShown(
            f"The store of receiver {receiver.name!r} is not answering; try again shortly.", 503
        ) from None
    if delivery is None:
        raise NotShown(
            f"Receiver {receiver.name!r} keeps no such delivery (never received, forgotten, or past"
            " its retention).",
            404,
        )
    return receiver, delivery


def _done_notice(args: Mapping[str, str], receiver: Receiver, d: Delivery) -> Notice | None:
    done, result = args.get("done", ""), args.get("result", "")
    if csrf.subject(args.get("subject", "")) != (done, result, receiver.name, d.id):
        return None  # no post redirected here (or the link was made up)
    if done == "replayed" and result == "owed":
        return Notice(
            "ok", "Replayed the chosen handlers; the others are still owed, so the delivery stays failed."
        )
    if done == "replayed" and result in STATUSES:
        if result == "failed":
            return Notice("bad", "Replayed, and it failed again: the newest attempt below has the error.")
        return Notice("ok", f"Replayed: the delivery is now {result}.")
    if done in ("in-flight", "in-flight-forget"):
        return Notice(
            "warn",
            f"Not {'forgotten' if done == 'in-flight-forget' else 'replayed'}: a sender's retry or a"
            " replay is processing this delivery right now. Try again in a few seconds.",
        )
    return None


@bp.get("/delivery")
def delivery() -> ResponseReturnValue:
    receiver, d = _find(request.args)
    return _page(
        "delivery.html",
        receiver=receiver,
        d=d,
        payload=payload_text(d, hidden(d, receiver.secrets)),
        notice=_done_notice(request.args, receiver, d),
    )


def _back(receiver: Receiver, d: Delivery, done: str, result: str = "") -> str:
    """The delivery's page, saying what a post did (signed: see :func:`_done_notice`)."""
    args: dict[str, Any] = {"receiver": receiver.name, "id": d.id, "done": done}
    if result:
        args["result"] = result
    args["subject"] = csrf.signed_subject(done, result, receiver.name, d.id)
    return url_for(".delivery", **args)


@bp.get("/delivery/<any(replay, forget):action>")
def confirm(action: str) -> ResponseReturnValue:
    """What replay or forget will do, and the form (with its token) that does it."""
    receiver, d = _find(request.args)
    return _page("confirm.html", action=action, receiver=receiver, d=d)


@bp.post("/delivery/replay")
def replay() -> ResponseReturnValue:
    receiver, d = _find(request.form)
    handlers = request.form.getlist("handler") or None
    try:
        after = receiver.hooks.inbox(_app()).replay(d.id, handlers=handlers)
    except LeaseLost as exc:  # before InFlight, its base: here the handlers did run
        return _message(f"Replayed, but {exc}.", 409)
    except InFlight:
        return redirect(_back(receiver, d, done="in-flight"), 303)
    except LookupError:
        return _message(f"Receiver {receiver.name!r} no longer keeps {d.id!r}.", 404)
    except ValueError as exc:
        return _message(f"Not replayed: {exc}.", 400)
    except StoreUnavailable:
        return _message(
            "The store is not answering: the replay did not run, or ran without being recorded"
            " (the delivery's attempts show which once it answers); try again shortly.",
            503,
        )
    return redirect(_back(receiver, d, done="replayed", result="owed" if after.owed else after.status), 303)


@bp.post("/delivery/forget")
def forget() -> ResponseReturnValue:
    receiver, d = _find(request.form)
    try:
        gone = receiver.hooks.inbox(_app()).forget(d.id)
    except InFlight:
        return redirect(_back(receiver, d, done="in-flight-forget"), 303)
    except StoreUnavailable:
        return _message("Not forgotten: the store is not answering; try again shortly.", 503)
    done = "forgotten" if gone else "gone"
    signed = csrf.signed_subject(done, "", receiver.name, d.id)
    return redirect(url_for(".index", done=done, subject=signed), 303)


#: The refusal: a page of its own, with an icon link so a browser asks for no favicon.
_REFUSED = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
    "<title>Not allowed - flask-webhooks</title></head>"
    "<body><p>You are not allowed to see this page.</p></body></html>\n"
)
