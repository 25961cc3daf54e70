"""CSRF tokens for the dashboard's forms, and the ids its redirects name, signed with itsdangerous.

A token is a random per-session value signed with a timestamp by an
:class:`~itsdangerous.URLSafeTimedSerializer` keyed by the app's
``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``, as Flask's session does).
It is valid for :data:`MAX_AGE` seconds and only in the session that
received it, so a token copied out of one operator's page does not work
in another browser. An id a redirect carries to the page it names (a
forget's "Forgot 'evt_1'") is signed too, so a link cannot make that page
say anything else.
"""

from __future__ import annotations

import hmac
import secrets

from flask import current_app, session
from itsdangerous import BadData, URLSafeTimedSerializer

#: Separate these signatures from every other use of ``SECRET_KEY``, and from each other.
SALT = "flask-hooks.dashboard.csrf"
SUBJECT_SALT = "flask-hooks.dashboard.subject"
#: Where the per-session value lives.
SESSION_KEY = "_flask_hooks_csrf"
#: The form field that carries the token.
FIELD = "csrf_token"
#: Seconds a page's forms stay usable.
MAX_AGE = 4 * 3600


def _serializer(salt: str = SALT) -> URLSafeTimedSerializer:
    app = current_app
    if not app.secret_key:
        # init_app refuses an app without one; this is an app that lost it afterwards.
        raise RuntimeError("the hooks dashboard needs SECRET_KEY to sign its CSRF tokens")
    keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.secret_key]  # newest last
    return URLSafeTimedSerializer(keys, salt=salt)


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


#: What a redirect's notice is about: (done, result, receiver, id).
Subject = tuple[str, str, str, str]


def signed_subject(done: str, result: str, receiver: str, id: str) -> str:
    """What a post did (the fixed words of its notice) and the delivery it did it to
    (receiver and id), signed together for the query string of the redirect that says so."""
    return _serializer(SUBJECT_SALT).dumps([done, result, receiver, id])


def subject(candidate: str) -> Subject | None:
    """The :data:`Subject` :func:`signed_subject` signed at most :data:`MAX_AGE` seconds
    ago, else None. Signed as one list: an id signed alone, or words joined to it by
    spaces, let a link pair a notice with another outcome or another delivery."""
    try:
        value = _serializer(SUBJECT_SALT).loads(candidate, max_age=MAX_AGE)
    except BadData:
        return None
    if isinstance(value, list) and len(value) == 4 and all(isinstance(part, str) for part in value):
        return value[0], value[1], value[2], value[3]
    return None
