"""``Dashboard``: the operator's pages, off unless created, behind ``allow``.

Per-app state lives under ``app.extensions["hooks_dashboard"]``; the
blueprint is module-level and reads it per request, so one
``Dashboard`` can serve several apps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask
from flask.sansio.app import App
from flask.sansio.blueprints import BlueprintSetupState

from ..core.errors import ConfigError
from ..extension import require_app, rule_host
from ..view import exempt_from_csrf

EXTENSION_KEY = "hooks_dashboard"

#: Scripts, frames, plugins, fonts and connections are all off; the pages
#: need their own stylesheet and (for the favicon) a ``data:`` image only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class _SetupState(BlueprintSetupState):
    def add_url_rule(
        self, rule: str, endpoint: str | None = None, view_func: Any = None, **options: Any
    ) -> None:
        options.setdefault("host", rule_host(self.app))
        super().add_url_rule(rule, endpoint, view_func, **options)


class PagesBlueprint(Blueprint):
    """A blueprint whose pages answer on every host of an app that matches hosts.

    Flask gives a blueprint's rules no host, so with
    ``Flask(host_matching=True)`` they would match no request: the setup
    state adds :func:`~flask_hooks.extension.rule_host` (the views drop the
    host argument and ``url_for`` fills it in with the request's host).
    """

    def make_setup_state(
        self, app: App, options: dict[str, Any], first_registration: bool = False
    ) -> BlueprintSetupState:
        return _SetupState(self, app, options, first_registration)


class DashboardState:
    """What one app's dashboard needs per request."""

    def __init__(self, allow: Callable[[], bool], url_prefix: str) -> None:
        self.allow = allow
        self.url_prefix = url_prefix

    def covers(self, path: str) -> bool:
        return path == self.url_prefix or path.startswith(self.url_prefix + "/")


class Dashboard:
    """Pages to see every receiver's deliveries, failures and rotations, and replay.

    ``allow`` is called on every request to the dashboard (in the request
    context) and must return ``True`` for the page to be served; anything
    else is a 403. It is required: there is no open dashboard.

    The forms that change state (replay, forget) are POSTs carrying a
    CSRF token signed with the app's ``SECRET_KEY``, which ``init_app``
    therefore requires; the token's random part lives in Flask's session.
    No config key is read besides ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str = "/hooks",
        allow: Callable[[], bool] | None = None,
    ) -> None:
        if allow is None:
            raise ConfigError(
                "Dashboard needs 'allow', a function that returns True for the people who may see"
                " deliveries, e.g. Dashboard(app, allow=lambda: current_user.is_admin)"
            )
        if not callable(allow):
            raise ConfigError(f"Dashboard's 'allow' must be a function returning a bool, not {allow!r}")
        prefix = "/" + url_prefix.strip("/")
        if prefix == "/":
            raise ConfigError("Dashboard's url_prefix must name a path below the root, e.g. '/hooks'")
        self.allow = allow
        self.url_prefix = prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the pages under ``url_prefix``; :class:`~flask_hooks.ConfigError` without
        ``SECRET_KEY``, ``TypeError`` when ``app`` is no Flask app (a blueprint)."""
        from .views import bp

        app = require_app(app)
        if EXTENSION_KEY in app.extensions:
            raise ConfigError("a Dashboard is already registered on this app")
        key = app.config.get("SECRET_KEY")
        if not (key and isinstance(key, (str, bytes))):  # a placeholder ``...`` failed on the first form
            raise ConfigError(
                "the hooks dashboard signs its forms' CSRF tokens with the app's SECRET_KEY:"
                " set app.config['SECRET_KEY'] before Dashboard.init_app(app)"
            )
        state = DashboardState(self.allow, self.url_prefix)
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(bp, url_prefix=self.url_prefix)
        exempt_from_csrf(app)  # from Flask-WTF: the forms carry a token of our own
