"""A small real app that submits jobs and receives their signed callbacks.

Run it with ``flask --app example_app run``; ``make demo`` runs
:mod:`example_app.demo`. ``/login`` (``EXAMPLE_ADMIN_PASSWORD``) opens
the webhook dashboard at ``/hooks/``. Every ``EXAMPLE_*`` key can be set in the
environment; the defaults are for development only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_hooks.providers import Narada

from . import admin, db, views
from .webhooks import hooks, narada, noukai

#: Config keys, each overridable by an environment variable of the same name.
DEFAULTS: dict[str, str] = {
    # Generic receiver on /webhooks; "new,old" during a rotation.
    "EXAMPLE_WEBHOOK_SECRET": "dev-webhook-secret",
    # Narada: the API key for dispatching, and the two callback credentials we choose.
    "EXAMPLE_NARADA_DISPATCH_URL": "https://api.narada.ai/fast/v2/remote-dispatch",
    "EXAMPLE_NARADA_API_KEY": "dev-narada-api-key",
    "EXAMPLE_NARADA_TOKEN": "dev-narada-token",
    "EXAMPLE_NARADA_SECRET": "dev-narada-secret",
    # Noukai: the flow's API root (``/jobs`` below it) and the signing secret.
    "EXAMPLE_NOUKAI_API_URL": "https://api.noukai.ai/seq/example-flow",
    "EXAMPLE_NOUKAI_API_KEY": "dev-noukai-api-key",
    "EXAMPLE_NOUKAI_SECRET": "dev-noukai-secret",
    # Where providers can reach this app (e.g. a tunnel); default: the request's host.
    "EXAMPLE_PUBLIC_URL": "",
    # The app's own SQLite file, relative to the instance folder.
    "EXAMPLE_DATABASE": "example.sqlite3",
    # Signs the session cookie (flash messages, the operator's login, the dashboard's CSRF tokens).
    "SECRET_KEY": admin.DEV_SECRET_KEY,
    # The operator's password for /login, which opens the webhook dashboard at /hooks/;
    # empty turns the login off, and so does a password of your own with the default SECRET_KEY.
    "EXAMPLE_ADMIN_PASSWORD": admin.DEV_PASSWORD,
}

_LISTS = ("EXAMPLE_WEBHOOK_SECRET", "EXAMPLE_NOUKAI_SECRET", "EXAMPLE_NARADA_TOKEN", "EXAMPLE_NARADA_SECRET")


def _secrets(value: Any) -> Any:
    """``"new,old"`` from the environment becomes a rotation list, newest first."""
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def create_app(config: Mapping[str, Any] | None = None, *, instance_path: str | None = None) -> Flask:
    """Build the app: defaults < environment < ``config``."""
    app = Flask(__name__, instance_path=instance_path)
    app.config.from_mapping({key: os.environ.get(key, default) for key, default in DEFAULTS.items()})
    app.config.from_mapping(config or {})
    for key in _LISTS:
        app.config[key] = _secrets(app.config[key])

    os.makedirs(app.instance_path, exist_ok=True)
    app.config["EXAMPLE_DATABASE"] = os.path.join(app.instance_path, app.config["EXAMPLE_DATABASE"])
    db.init_db(app.config["EXAMPLE_DATABASE"])

    # Receivers: the generic one reads HOOKS_SECRET; Narada needs two
    # credentials, so it gets a provider instance; Noukai a preset name.
    app.config.setdefault("HOOKS_SECRET", app.config["EXAMPLE_WEBHOOK_SECRET"])
    app.config.setdefault(
        "HOOKS_NARADA_PROVIDER",
        Narada(token=app.config["EXAMPLE_NARADA_TOKEN"], secret=app.config["EXAMPLE_NARADA_SECRET"]),
    )
    app.config.setdefault("HOOKS_NOUKAI_PROVIDER", "noukai")
    app.config.setdefault("HOOKS_NOUKAI_SECRET", app.config["EXAMPLE_NOUKAI_SECRET"])
    for receiver in (hooks, narada, noukai):
        receiver.init_app(app)

    app.register_blueprint(views.bp)
    app.register_blueprint(admin.bp)
    admin.dashboard.init_app(app)
    return app
