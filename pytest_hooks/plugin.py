"""The ``hooks`` pytest plugin (registered through the ``pytest11`` entry point).

Thin on purpose: the fixtures wire pytest to plain classes that work
without pytest. Flask and flask_hooks are imported inside the fixtures,
so merely having the plugin installed costs a project nothing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from flask import Flask

    from flask_hooks.extension import Receiver

    from .clock import FakeClock
    from .delivery import SignedDelivery
    from .fake_api import ProviderAPI
    from .recorder import SignalRecorder
    from .sender import Sender

NO_APP = (
    "{fixture} needs an `app` fixture that returns your Flask app (the pytest-flask"
    " convention). Define one, e.g. in conftest.py:\n\n"
    "    @pytest.fixture\n"
    "    def app():\n"
    "        return create_app()\n"
)


INSTALL_HINT = (
    "{fixture} needs the `{module}` package, which is not installed."
    " Install the plugin's dependencies with: pip install 'flask-webhooks[pytest]'"
)


def _fail(message: str) -> NoReturn:
    """Fail the test with ``message`` alone: no traceback, no chained exception."""
    __tracebackhide__ = True
    raise pytest.fail.Exception(message, pytrace=False) from None


def _app(request: pytest.FixtureRequest, fixture: str) -> Flask:
    """The user's ``app`` fixture value, or a failure naming what to define."""
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError as exc:
        if exc.argname != "app":
            raise  # the user's `app` fixture exists but needs a missing fixture: pytest says which
        _fail(NO_APP.format(fixture=fixture))
    from flask import Flask

    if not isinstance(app, Flask):
        _fail(f"{fixture}: the `app` fixture returned {app!r}, not a Flask app")
    return app


#: The default SQLite files already warned about in this session.
_WARNED = pytest.StashKey[set[str]]()


def _receivers(
    request: pytest.FixtureRequest, app: Flask, fixture: str, *, required: bool = True
) -> list[Receiver]:
    """The app's receivers, or a failure naming the fixture that needs one."""
    from flask_hooks.extension import HooksState

    state = app.extensions.get("hooks")
    if not isinstance(state, HooksState) or not state.receivers:
        if not required:  # the test's first forge says so, at its own line
            return []
        _fail(
            f"{fixture}: the app from your `app` fixture has no flask_hooks receiver;"
            " call Hooks.init_app(app) (or Hooks(app)) in the app factory"
        )
    receivers = list(state.receivers.values())
    _warn_shared_file(request, app, receivers)
    return receivers


def _warn_shared_file(request: pytest.FixtureRequest, app: Flask, receivers: list[Receiver]) -> None:
    """Once per file and session: receivers kept in the default SQLite file of an
    instance folder outside pytest's temporary ones, which every test and run shares."""
    from flask_hooks.stores.url import DEFAULT_URL

    if not any(receiver.settings.store == DEFAULT_URL for receiver in receivers):
        return
    path = Path(app.instance_path, "flask_hooks.sqlite3").resolve()
    temporary = request.getfixturevalue("tmp_path_factory").getbasetemp().resolve()
    warned = request.config.stash.setdefault(_WARNED, set())
    if path.is_relative_to(temporary) or str(path) in warned:
        return
    warned.add(str(path))
    warnings.warn(
        f"the app's receivers keep their records in {path}, shared by every test and every run"
        " (a fixed id is a duplicate the second time): set HOOKS_STORE='memory://' in the app"
        " your `app` fixture makes",
        pytest.PytestWarning,
        stacklevel=3,
    )


@pytest.fixture
def webhook_clock(request: pytest.FixtureRequest) -> Iterator[FakeClock]:
    """A frozen clock installed as every receiver's ``clock`` on ``app``; restored after."""
    from .clock import FakeClock

    receivers = _receivers(request, _app(request, "webhook_clock"), "webhook_clock")
    clock = FakeClock()
    saved = [(receiver, receiver.clock) for receiver in receivers]
    for receiver in receivers:
        receiver.clock = clock
    try:
        yield clock
    finally:
        for receiver, original in saved:
            receiver.clock = original


@pytest.fixture
def signed_delivery(request: pytest.FixtureRequest) -> Callable[..., SignedDelivery]:
    """Forge deliveries signed by a receiver's own provider and key.

    ``signed_delivery(type, payload=None, *, receiver=None, id=None,
    timestamp=None, secret_index=0, headers=None, body=None)``; the
    timestamp defaults to the receiver's clock. ``body=`` (bytes, instead
    of ``payload``) is signed and posted exactly as given.
    """
    from .delivery import SignedDelivery, find_receiver

    app = _app(request, "signed_delivery")
    _receivers(request, app, "signed_delivery", required=False)

    def forge(
        type: str,
        payload: Any = None,
        *,
        receiver: Any = None,
        id: str | None = None,
        timestamp: int | None = None,
        secret_index: int = 0,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> SignedDelivery:
        __tracebackhide__ = True
        try:
            target = find_receiver(app, receiver, what="signed_delivery")
        except LookupError as exc:
            _fail(str(exc))
        return SignedDelivery.forge(
            app,
            target,
            type,
            payload,
            id=id,
            timestamp=timestamp,
            secret_index=secret_index,
            headers=headers,
            body=body,
        )

    return forge


@pytest.fixture
def webhook_sender(request: pytest.FixtureRequest) -> Callable[..., Sender]:
    """``webhook_sender(schedule="archived", timeout=None)``: a retry simulator.

    Using this fixture freezes time for the whole test: it requests
    ``webhook_clock``, which replaces every receiver's clock on ``app``
    (not only the one a delivery targets) from the start of the test, and
    each ``send()`` moves that clock forward along the schedule. Request
    ``webhook_clock`` as well to read or advance it.
    """
    from .presets import resolve
    from .sender import Sender

    app = _app(request, "webhook_sender")
    _receivers(request, app, "webhook_sender")
    clock: FakeClock = request.getfixturevalue("webhook_clock")

    def make(schedule: str | Sequence[float] = "archived", timeout: float | None = None) -> Sender:
        return Sender(app, clock, resolve(schedule, timeout))

    return make


@pytest.fixture
def hook_signals() -> Iterator[SignalRecorder]:
    """Every flask_hooks signal sent during the test, as ``(name, kwargs)``."""
    from .recorder import SignalRecorder

    recorder = SignalRecorder()
    with recorder.recording():
        yield recorder


@pytest.fixture
def provider_api(request: pytest.FixtureRequest) -> Iterator[ProviderAPI]:
    """A fake of the senders' job APIs; ``.narada()`` / ``.noukai()`` turn them on."""
    try:
        from .fake_api import ProviderAPI
    except ImportError as exc:
        if exc.name not in ("responses", "requests"):
            raise
        _fail(INSTALL_HINT.format(fixture="provider_api", module=exc.name))

    api = ProviderAPI(_app(request, "provider_api"))
    with api.mock:
        yield api
        problems = api.problems()  # before the mock's exit resets its call list
    if problems:
        _fail("provider_api:\n  " + "\n  ".join(problems))
