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


def is_admin() -> bool:
    return session.get("admin") is True


#: Set up on each app by :func:`example_app.create_app`.
dashboard = Dashboard(url_prefix="/hooks", allow=is_admin)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    password = str(current_app.config["EXAMPLE_ADMIN_PASSWORD"])
    if request.method == "GET":
        return render_template("login.html", enabled=bool(password), error=None)
    given = request.form.get("password", "")
    if password and hmac.compare_digest(given.encode(), password.encode()):
        session.clear()  # a fresh session for the operator
        session["admin"] = True
        return redirect(url_for("hooks_dashboard.index"), 303)
    error = "Wrong password." if password else "Set EXAMPLE_ADMIN_PASSWORD to enable the login."
    return render_template("login.html", enabled=bool(password), error=error), 401


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("example.index"), 303)
