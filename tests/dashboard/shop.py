"""A small shop app with two receivers, a login and the dashboard, seeded over a day.

Shared by the test-client tests and the browser test. Times come from a
:class:`~tests.helpers.ManualClock` fixed at :data:`NOW`, so pages (and the
documentation's screenshots) show the same deliveries on every run.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from flask import Flask, redirect, render_template_string, request, session, url_for
from werkzeug.wrappers import Response

from flask_hooks import Hooks
from flask_hooks.dashboard import Dashboard
from tests.conftest import generic_post
from tests.helpers import ManualClock
from tests.test_inbox import Bug  # billing.invoice fails until the operator fixes it

#: 2025-06-15 14:40 UTC.
NOW = 1_750_000_800.0
DAY = 86400.0
NEW, OLD = "whsec-new-secret", "whsec-old-secret"
BILLING_SECRET = "whsec-billing-secret"
PASSWORD = "correct horse battery staple"
SECRET_KEY = "dashboard-test-session-key"

HOSTILE_ID = '"><img src=x onerror="window.pwned=1">'
HOSTILE = {
    "id": HOSTILE_ID,
    "type": "order.<script>window.pwned=1</script>",
    "note": "<script>window.pwned=1</script>",
    "link": "javascript:window.pwned=1",
    "html": '"><img src=x onerror=window.pwned=1>',
    "svg": "<svg onload=window.pwned=1>",
}

LOGIN = """<!doctype html><title>Log in</title><link rel="icon" href="data:,">
<form method="post"><input type="password" name="password" id="password">
<button type="submit" id="login">Log in</button></form>"""


@dataclasses.dataclass
class Shop:
    app: Flask
    hooks: Hooks
    billing: Hooks
    clock: ManualClock
    bug: Bug
    allowed: list[bool]

    def post(self, payload: Any, *, secret: str = NEW, **headers: str) -> Any:
        return generic_post(self.app.test_client(), payload, secret=secret, **headers)

    def post_billing(self, payload: Any) -> Any:
        return generic_post(self.app.test_client(), payload, secret=BILLING_SECRET, url="/webhooks/billing")

    def admin(self) -> Any:
        """A test client whose session is logged in."""
        client = self.app.test_client()
        with client.session_transaction() as sess:
            sess["admin"] = True
        return client


def make_shop(
    instance_path: str,
    *,
    store: Any = "memory://",
    start: float = NOW - DAY,
    host_matching: bool = False,
    **config: Any,
) -> Shop:
    clock = ManualClock(start)
    hooks = Hooks(store=store, clock=clock, secret=[NEW, OLD])
    billing = Hooks(name="billing", url="/webhooks/billing", store=store, clock=clock, secret=BILLING_SECRET)
    bug = Bug()
    hooks.on("order", name="orders.save")(lambda event: None)
    hooks.on("order.paid", name="billing.invoice")(bug)
    billing.on("invoice.*", name="ledger.book")(lambda event: None)

    static_host = "static.shop.example" if host_matching else None
    app = Flask(
        "dashboard_shop", instance_path=instance_path, host_matching=host_matching, static_host=static_host
    )
    app.config.update(TESTING=True, SECRET_KEY=SECRET_KEY, **config)
    hooks.init_app(app)
    billing.init_app(app)
    allowed: list[bool] = []

    def allow() -> bool:
        ok = session.get("admin") is True
        allowed.append(ok)
        return ok

    Dashboard(app, allow=allow)

    @app.route("/login", methods=["GET", "POST"], host="shop.example" if host_matching else None)
    def login() -> Any:
        if request.method == "POST":
            if hmac.compare_digest(request.form.get("password", "").encode(), PASSWORD.encode()):
                session["admin"] = True
                return redirect(url_for("hooks_dashboard.index"), 303)
            return render_template_string(LOGIN), 401
        return render_template_string(LOGIN)

    @app.post("/logout", host="shop.example" if host_matching else None)
    def logout() -> Response:
        session.clear()
        return redirect(url_for("login"), 303)

    return Shop(app, hooks, billing, clock, bug, allowed)


def seed_day(shop: Shop, n: int = 96) -> None:
    """A day of traffic ending at ``NOW``: a rotation finishing, retries, forgeries, three failures."""
    shop.clock.advance_to(NOW - DAY + 60)
    step = (DAY - 120) / n
    for i in range(n):
        shop.clock.advance(step)
        old_secret = i < n // 2 and i % 4 == 0  # the sender moved to the new secret mid-day
        if i % 11 == 5:
            payload = {"id": f"inv_{i:04d}", "type": "invoice.paid", "amount": 100 + i}
            shop.post_billing(payload)
            continue
        kind = "order.paid" if i in (40, 70, 88) else ("order.created" if i % 3 else "order.shipped")
        payload = {"id": f"ord_{i:04d}", "type": kind, "data": {"object": {"id": f"o{i}", "total": 10 * i}}}
        shop.post(payload, secret=OLD if old_secret else NEW)
        if i % 9 == 0:
            shop.post(payload, secret=OLD if old_secret else NEW)  # a sender's retry: a duplicate
        if i % 13 == 7:
            shop.post(payload, secret="guessed")  # a forgery: rejected
    shop.clock.advance(30)
    shop.post(
        HOSTILE, Authorization="Bearer leaked-credential", **{"X-Note": "<script>window.pwned=1</script>"}
    )
    shop.clock.advance_to(NOW)
