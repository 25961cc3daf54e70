"""CSRF tokens for the dashboard's forms, signed with itsdangerous.

A token is a random per-session value signed with a timestamp by an
:class:`~itsdangerous.URLSafeTimedSerializer` keyed by the app's
``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, as Flask's session does).
It is valid for :data:`MAX_AGE` seconds and only in the session that
received it, so a token copied out of one operator's page does not work
in another browser.
"""

from __future__ import annotations

import hmac
import secrets

from flask import current_app, session
from itsdangerous import BadData, URLSafeTimedSerializer

#: Separates these signatures from every other use of ``SECRET_KEY``.
SALT = "flask-hooks.dashboard.csrf"
#: Where the per-session value lives.
SESSION_KEY = "_flask_hooks_csrf"
#: The form field that carries the token.
FIELD = "csrf_token"
#: Seconds a page's forms stay usable.
MAX_AGE = 4 * 3600


def _serializer() -> URLSafeTimedSerializer:
    app = current_app
    if not app.secret_key:
        # init_app refuses an app without one; this is an app that lost it afterwards.
        raise RuntimeError("the hooks dashboard needs SECRET_KEY to sign its CSRF tokens")
    keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key]  # newest last
    return URLSafeTimedSerializer(keys, salt=SALT)


def token() -> str:
    """A token for a form on the current page (creates the session value once)."""
    serializer = _serializer()
    value = session.get(SESSION_KEY)
    if not isinstance(value, str):
        value = session[SESSION_KEY] = secrets.token_urlsafe(24)
    return serializer.dumps(value)


def valid(candidate: object) -> bool:
    """Whether ``candidate`` is a current token of this session."""
    serializer = _serializer()
    expected = session.get(SESSION_KEY)
    if not isinstance(candidate, str) or not candidate or not isinstance(expected, str):
        return False
    try:
        value = serializer.loads(candidate, max_age=MAX_AGE)
    except BadData:
        return False
    return isinstance(value, str) and hmac.compare_digest(value, expected)
