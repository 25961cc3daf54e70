"""The Flask extension: ``Hooks``, ``init_app`` and the ``on`` decorator.

Handlers live on the ``Hooks`` object; everything that depends on an app
(settings, keys, store, URL rules) lives in ``app.extensions["hooks"]``,
so one ``Hooks`` can serve several apps and several receivers can share
one app.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, current_app
from flask.sansio.app import App
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from .core.attempts import credentials, header_credentials
from .core.clock import Clock
from .core.errors import ConfigError, StoreUnavailable
from .core.event import Event, HeaderMap
from .core.pipeline import Pipeline, ReceiverConfig
from .core.providers import Provider
from .core.routing import Router
from .settings import Settings, config_prefix, resolve
from .stores import DedupeStore, open_store
from .stores.leases import LeaseKeeper, keeper

if TYPE_CHECKING:
    from .inbox import Inbox

H = TypeVar("H", bound=Callable[[Event], object])


class AppLeases:
    """The process's lease keeper, renewing this receiver's claims inside its app's context.

    The keeper's thread has no app context, and a store may read the current
    app (``SqlStore(db)``: Flask-SQLAlchemy's ``db.engine`` is per app), so a
    renewal made without one could reach another app's database.
    """

    def __init__(self, app: Flask, store: DedupeStore, keeper: LeaseKeeper = keeper) -> None:
        self._app = weakref.ref(app)  # the app owns its receivers, not the other way round
        self._store = store
        self._keeper = keeper

    def hold(self, store: DedupeStore, ns: str, id: str, token: str, *, lease: float, clock: Clock) -> object:
        # ``store`` is the receiver's, the one given here at init_app: the keeper renews through us.
        return self._keeper.hold(self, ns, id, token, lease=lease, clock=clock)

    def drop(self, held: Any) -> None:
        self._keeper.drop(held)

    def after_drop(self, ns: str, id: str, step: Callable[[], None]) -> bool:
        return self._keeper.after_drop(ns, id, step)

    def lost(self, held: Any) -> bool:
        return self._keeper.lost(held)

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None:
        app = self._app()
        if app is None:  # pragma: no cover - an app collected while its handler runs
            raise StoreUnavailable()
        with app.app_context():
            self._store.renew(ns, id, token, now=now, lease=lease)


class Receiver:
    """One ``Hooks`` bound to one app: resolved settings, keys and store."""

    def __init__(self, hooks: Hooks, settings: Settings, store: DedupeStore, app: Flask) -> None:
        self.hooks = hooks
        self.settings = settings
        self.name = settings.name
        self.provider = settings.provider
        self.store = store
        #: The receiver's clock; tests swap it (``webhook_clock``) without patching time.
        self.clock: Clock = settings.clock
        self.keys = settings.provider.keys(settings.secrets)
        #: Every credential as text, blanked wherever a traceback or an excerpt is shown.
        provider, configured = settings.provider, settings.secrets
        self.secrets = (*configured, *provider.secret_aliases(configured), *provider.held_secrets())
        self.pipeline = Pipeline(
            ReceiverConfig(
                name=settings.name,
                provider=settings.provider,
                keys=self.keys,
                store=store,
                router=hooks.router,
                dedupe_ttl=settings.dedupe_ttl,
                lease=settings.lease,
                tolerance=settings.tolerance,
                clock=self.now,
                ns=settings.namespace,
                leases=AppLeases(app, store),
                retention=settings.retention,
                secrets=self.secrets,
            )
        )

    @property
    def ns(self) -> str:
        """What the store keys this receiver's records under (app and receiver)."""
        return self.settings.namespace

    def now(self) -> float:
        return self.clock()

    def credentials(self, event: Event | None, headers: HeaderMap | None = None) -> list[str]:
        """What no log line may show: the secrets and the delivery's credentials, those of
        ``event`` once verified, else those its ``headers`` carry."""
        if event is not None:
            return credentials(event, self.provider, self.secrets)
        return [*self.secrets, *(header_credentials(headers, self.provider) if headers is not None else ())]

    def __repr__(self) -> str:
        return f"<Receiver {self.name!r} {self.settings.url} {self.provider.name}>"


class HooksState:
    """``app.extensions["hooks"]``: the app's receivers by name and its stores."""

    def __init__(self) -> None:
        self.receivers: dict[str, Receiver] = {}
        self.stores: dict[str, DedupeStore] = {}
        #: The view's endpoints (with and without the slash) to their receiver.
        self.endpoints: dict[str, Receiver] = {}

    def open_store(self, spec: str | DedupeStore, instance_path: str) -> DedupeStore:
        if isinstance(spec, DedupeStore):
            return spec
        if spec not in self.stores:
            self.stores[spec] = open_store(spec, instance_path=instance_path)
        return self.stores[spec]


class Hooks:
    """A webhook receiver: one URL, one provider, its secrets and handlers.

    Every option is keyword-only and wins over the app config
    (``HOOKS_URL``, ``HOOKS_PROVIDER``, ``HOOKS_SECRET``, ``HOOKS_STORE``,
    ``HOOKS_DEDUPE_TTL``, ``HOOKS_LEASE``, ``HOOKS_TOLERANCE``,
    ``HOOKS_MAX_BODY``, ``HOOKS_RETENTION``, ``HOOKS_NAMESPACE``;
    ``HOOKS_<NAME>_*`` for ``name="<name>"``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        name: str = "hooks",
        url: str | None = None,
        provider: str | Provider | None = None,
        secret: str | bytes | list[str] | tuple[str, ...] | None = None,
        store: str | DedupeStore | None = None,
        dedupe_ttl: float | None = None,
        lease: float | None = None,
        tolerance: float | tuple[float, float] | None = None,
        max_body: int | None = None,
        retention: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        config_prefix(name)  # a ConfigError now, not a TypeError at init_app (an unhashable name)
        self.name = name
        self.options: dict[str, Any] = {
            "url": url,
            "provider": provider,
            "secret": secret,
            "store": store,
            "dedupe_ttl": dedupe_ttl,
            "lease": lease,
            "tolerance": tolerance,
            "max_body": max_body,
            "retention": retention,
            "clock": clock,
        }
        self.router = Router()
        if app is not None:
            self.init_app(app)

    def on(
        self, *patterns: str, name: str | None = None, defer: Any = None, atomic: bool = False
    ) -> Callable[[H], H]:
        """Register a handler for event types; returns the function unchanged.

        ``"a.b"`` matches ``a.b`` and ``a.b.c``; ``"a.*"`` everything below
        ``a``; ``"*"`` everything. All matching handlers run, in order.
        ``name`` is what the handler's success is recorded under (default:
        ``module.qualname``); keep it when renaming the function, or a retry
        after the deploy runs the handler again. ``defer`` hands it to a task
        queue; ``atomic=True`` runs it inside the database transaction that
        records its success (a :class:`~flask_hooks.stores.sql.SqlStore`).
        """

        def decorator(func: H) -> H:
            self.router.add(func, patterns, name=name, defer=defer, atomic=atomic)
            return func

        return decorator

    def init_app(self, app: Flask) -> None:
        """Resolve settings, open the store and add the receiver's URL rules.

        Raises :class:`ConfigError` when the receiver has no secret, a
        setting is invalid, or a receiver with this name already exists, and
        :class:`TypeError` when ``app`` is no Flask app (a blueprint).
        """
        from .cli import cli
        from .view import add_url_rules

        app = require_app(app)
        state = app.extensions.setdefault("hooks", HooksState())
        if self.name in state.receivers:
            raise ConfigError(
                f"a receiver named {self.name!r} is already registered on this app;"
                " give the second Hooks(name=...) its own name"
            )
        settings = resolve(self.name, self.options, app.config, import_name=app.import_name)
        for other in state.receivers.values():
            if other.settings.prefix == settings.prefix:  # names apart in case only
                raise ConfigError(
                    f"receivers {other.name!r} and {self.name!r} both read {settings.prefix}*:"
                    " each would take the other's secret; give them names that differ in more than case"
                )
            if other.settings.url.rstrip("/") == settings.url.rstrip("/"):
                raise ConfigError(f"receivers {other.name!r} and {self.name!r} share the URL {settings.url}")
        _check_url_is_free(app, settings.url, settings.prefix)
        store = state.open_store(settings.store, app.instance_path)
        atomic = [r.name for r in self.router.routes if r.atomic]
        needs = (
            f"needs a SQL store (flask_hooks.stores.sql.SqlStore, {settings.prefix}STORE="
            f"'postgresql+psycopg://...'); {store!r} of app {app.import_name!r}"
            " cannot run it in its transaction"
        )
        if atomic and not store.supports_atomic:
            raise ConfigError(f"handlers {', '.join(atomic)} are atomic=True, which {needs}")
        receiver = Receiver(self, settings, store, app)
        state.receivers[self.name] = receiver
        add_url_rules(app, receiver)
        if not store.supports_atomic and not self.router.refuse_atomic:
            self.router.refuse_atomic = needs  # a handler registered after init_app, too
        if "hooks" not in app.cli.commands:
            app.cli.add_command(cli)

    def inbox(self, app: Flask | None = None) -> Inbox:
        """The delivery inbox of this receiver on ``app`` (default: the current app)."""
        from .inbox import Inbox

        return Inbox(self.receiver(app), app or current_app._get_current_object())  # type: ignore[attr-defined]

    def receiver(self, app: Flask | None = None) -> Receiver:
        """This receiver's state on ``app`` (default: the current app)."""
        return get_receiver(app or current_app, self.name)


#: The URL variable of our rules' host part on an app that matches hosts.
HOST_ARG = "flask_hooks_host"


def require_app(app: object) -> Flask:
    """The Flask app ``app`` is (the one behind ``current_app``), else ``TypeError``: a
    blueprint has no config or extensions of its own, and without this check ``init_app``
    fails inside, as if the bug were ours."""
    if isinstance(app, LocalProxy):  # current_app: a weak reference needs the app itself
        app = app._get_current_object()
    if not isinstance(app, Flask):
        hint = (
            "; a blueprint has no config of its own: call init_app(app) with the app it is"
            " registered on, in create_app"
            if isinstance(app, Blueprint)
            else ""
        )
        raise TypeError(f"init_app() takes a Flask app, got {type(app).__name__}{hint}")
    return app


def rule_host(app: App) -> str | None:
    """The host of our URL rules: any host on an app that matches hosts, else none.

    With ``Flask(host_matching=True)`` a rule without a host matches no
    request, so the receiver answered 404. A delivery is authenticated by
    its signature and the dashboard by ``allow``, not by the name a sender
    or a proxy uses, so every host is accepted (``TRUSTED_HOSTS`` still
    applies). The host reaches the views as ``flask_hooks_host``, which
    they ignore.
    """
    return f"<{HOST_ARG}>" if app.url_map.host_matching else None


def served_by(app: Flask, path: str, method: str) -> str | None:
    """The endpoint of the app's view answering ``method`` at ``path``, if any.

    A 404, a 405 (the view takes other methods) or a redirect: nobody does.
    """
    try:
        endpoint, _ = app.url_map.bind("localhost").match(path, method=method)
    except HTTPException:
        return None
    return str(endpoint)


def _check_url_is_free(app: Flask, url: str, prefix: str) -> None:
    """A POST to the URL must reach the receiver, not a view the app already has."""
    base = url.rstrip("/")
    for path in {base or "/", base + "/"}:
        endpoint = served_by(app, path, "POST")
        if endpoint is None:
            continue
        raise ConfigError(
            f"{path} is already served by the view {endpoint!r}: give the receiver"
            f" another URL ({prefix}URL) or move that view"
        )


def get_state(app: Flask) -> HooksState:
    state = app.extensions.get("hooks")
    if not isinstance(state, HooksState):
        raise RuntimeError("flask_hooks is not set up on this app. Did you forget to call 'init_app'?")
    return state


def get_receiver(app: Flask, name: str) -> Receiver:
    state = get_state(app)
    try:
        return state.receivers[name]
    except KeyError:
        known = ", ".join(sorted(state.receivers)) or "none"
        raise RuntimeError(f"no receiver named {name!r} on this app (receivers: {known})") from None
