"""The operator's side: a password login, and the flask_hooks dashboard behind it.

The dashboard (``/hooks/``) lists every receiver's deliveries, charts the
last day and replays failures; ``allow`` lets in only a session that
logged in here with ``EXAMPLE_ADMIN_PASSWORD``. A real app would use its
own accounts (Flask-Login's ``current_user``) instead.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from flask_hooks.dashboard import Dashboard

bp = Blueprint("admin", __name__)

#: The development defaults (:data:`example_app.DEFAULTS`), published with this code.
DEV_SECRET_KEY = "dev-only-session-key"
DEV_PASSWORD = "dev-admin-password"


def login_closed() -> str | None:
    """Why the login is off, if it is. An operator's own password with the published
    development ``SECRET_KEY`` would guard nothing: anyone can sign a session cookie
    that says ``admin`` with that key, without the password."""
    password = current_app.config["EXAMPLE_ADMIN_PASSWORD"]
    if not password:
        return "set EXAMPLE_ADMIN_PASSWORD to open it"
    keys = [current_app.config["SECRET_KEY"], *(current_app.config.get("SECRET_KEY_FALLBACKS") or ())]
    if password != DEV_PASSWORD and DEV_SECRET_KEY in keys:  # a session a fallback signed is accepted
        return "set SECRET_KEY as well as EXAMPLE_ADMIN_PASSWORD (the development key is published)"
    return None


def is_admin() -> bool:
    return session.get("admin") is True and login_closed() is None


#: Set up on each app by :func:`example_app.create_app`.
dashboard = Dashboard(url_prefix="/hooks", allow=is_admin)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    password, closed = str(current_app.config["EXAMPLE_ADMIN_PASSWORD"]), login_closed()
    if request.method == "GET":
        return render_template("login.html", closed=closed, error=None)
    given = request.form.get("password", "")
    if closed is None and hmac.compare_digest(given.encode(), password.encode()):
        session.clear()  # a fresh session for the operator
        session["admin"] = True
        return redirect(url_for("hooks_dashboard.index"), 303)
    error = "Wrong password." if closed is None else f"The login is off: {closed}."
    return render_template("login.html", closed=closed, error=error), 401


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("example.index"), 303)
