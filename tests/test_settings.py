"""init_app conventions: config keys, precedence, fail-closed secrets, several receivers and apps."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_hooks import ConfigError, Hooks
from flask_hooks.extension import get_state
from flask_hooks.providers import (
    FlowStep,
    Generic,
    GitHub,
    HeaderMap,
    Narada,
    Noukai,
    Outgoing,
    Parsed,
    Provider,
    Shopify,
    SignedRequest,
    Tolerance,
    Verified,
)
from flask_hooks.settings import DEFAULTS
from flask_hooks.stores import MemoryStore, SqliteStore
from tests.conftest import SECRET, generic_post
from tests.providers.samples import WHSEC

PAYLOAD = {"id": "evt_1", "type": "resource.created"}


def test_missing_secret_fails_closed_naming_the_key(tmp_path: Path) -> None:
    app = Flask("x", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="HOOKS_SECRET"):
        Hooks(app)
    app2 = Flask("y", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match="HOOKS_STRIPE_SECRET"):
        Hooks(app2, name="stripe")



@pytest.mark.parametrize("secret", [b"\xff\xfe", [b"ok", b"\xe9t\xe9"]])
def test_a_secret_in_bytes_that_are_not_utf8_is_a_config_error(tmp_path: Path, secret: object) -> None:
    """It used to escape init_app as a UnicodeDecodeError."""
    app = Flask("x", instance_path=str(tmp_path))
    with pytest.raises(ConfigError, match=r"HOOKS_SECRET.*UTF-8"):
        Hooks(app, secret=secret, store="memory://")  # type: ignore[arg-type]

def test_config_keys_are_read_once_and_keywords_win(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(lease=5)
    app = make_app(
        hooks,
        HOOKS_URL="/in",
        HOOKS_STORE="memory://",
        HOOKS_LEASE=99,
        HOOKS_DEDUPE_TTL=10,
        HOOKS_TOLERANCE=(60, 5),
        HOOKS_MAX_BODY=2048,
    )
    settings = hooks.receiver(app).settings
    assert (settings.url, settings.lease, settings.dedupe_ttl) == ("/in", 5, 10)
    assert settings.tolerance == (60.0, 5.0)
    assert settings.max_body == 2048
    assert isinstance(hooks.receiver(app).store, MemoryStore)
    app.config["HOOKS_URL"] = "/changed"  # read at init_app only
    assert generic_post(app.test_client(), PAYLOAD, url="/in").status_code == 200


def test_named_receivers_read_their_own_keys(make_app: Callable[..., Flask]) -> None:
    default = Hooks(store="memory://")
    stripe = Hooks(name="stripe", store="memory://")
    app = make_app(default, stripe, HOOKS_STRIPE_SECRET="other", HOOKS_STRIPE_URL="/stripe")
    assert [r.settings.url for r in get_state(app).receivers.values()] == ["/webhooks", "/stripe"]
    client = app.test_client()
    assert generic_post(client, PAYLOAD, url="/stripe", secret="other").status_code == 200
    assert generic_post(client, PAYLOAD, url="/stripe", secret=SECRET).status_code == 401


def test_a_name_registered_twice_is_an_error(make_app: Callable[..., Flask]) -> None:
    app = make_app(Hooks(store="memory://"))
    with pytest.raises(ConfigError, match="already registered"):
        Hooks(store="memory://").init_app(app)


def test_names_that_read_the_same_keys_are_an_error(make_app: Callable[..., Flask]) -> None:
    """``stripe`` and ``Stripe`` both read HOOKS_STRIPE_*: each would take the other's secret."""
    app = make_app(Hooks(name="stripe", store="memory://"), HOOKS_STRIPE_SECRET="x")
    with pytest.raises(ConfigError, match="'stripe' and 'Stripe' both read HOOKS_STRIPE_"):
        Hooks(name="Stripe", store="memory://").init_app(app)


def test_two_receivers_on_one_url_is_an_error(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="share the URL"):
        make_app(
            Hooks(store="memory://"), Hooks(name="b", url="/webhooks/", store="memory://"), HOOKS_B_SECRET="x"
        )


def test_one_hooks_object_serves_several_apps(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    hooks = Hooks(store="memory://")
    calls: list[str] = []
    hooks.on("*")(lambda e: calls.append(e.receiver))
    first = make_app(hooks)
    second = Flask("second", instance_path=str(tmp_path / "second"))
    second.config["HOOKS_SECRET"] = "second-secret"
    hooks.init_app(second)
    assert generic_post(first.test_client(), PAYLOAD).status_code == 200
    assert generic_post(second.test_client(), PAYLOAD, secret="second-secret").status_code == 200
    assert generic_post(second.test_client(), PAYLOAD).status_code == 401  # its own secret
    assert hooks.receiver(first) is not hooks.receiver(second)
    assert calls == ["hooks", "hooks"]


def test_handlers_may_be_registered_before_or_after_init_app(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")
    app = make_app(hooks)
    calls: list[str] = []
    hooks.on("*")(lambda e: calls.append(e.id))
    generic_post(app.test_client(), PAYLOAD)
    assert calls == ["evt_1"]


def test_default_store_is_sqlite_in_the_instance_folder(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks()
    app = make_app(hooks)
    store = hooks.receiver(app).store
    assert isinstance(store, SqliteStore)
    assert Path(store.path).parent == Path(app.instance_path)
    assert generic_post(app.test_client(), PAYLOAD).status_code == 200
    assert Path(store.path).exists()


def test_receivers_sharing_a_store_url_share_the_store(make_app: Callable[..., Flask]) -> None:
    a, b = Hooks(), Hooks(name="b")
    app = make_app(a, b, HOOKS_B_SECRET="x")
    assert a.receiver(app).store is b.receiver(app).store


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lease", 0, "HOOKS_LEASE"),
        ("dedupe_ttl", -1, "HOOKS_DEDUPE_TTL"),
        ("tolerance", "soon", "HOOKS_TOLERANCE"),
        ("max_body", 1.5, "HOOKS_MAX_BODY"),
        ("url", "webhooks", "HOOKS_URL"),
        ("url", "/webhooks?source=stripe", "HOOKS_URL is a path.* no request path has"),
        ("url", "/webhooks#stripe", "HOOKS_URL is a path.* no request path has"),
        ("provider", "carrier-pigeon", "unknown provider"),
        ("store", "ftp://x", "unknown store URL"),
        ("store", Path("hooks.db"), "HOOKS_STORE must be a store URL .* or a DedupeStore, not PosixPath"),
        ("store", MemoryStore, "HOOKS_STORE must be a store URL .* not the class MemoryStore"),
        ("secret", [""], "HOOKS_SECRET"),
    ],
)
def test_invalid_settings_fail_at_init_app(
    make_app: Callable[..., Flask], option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(Hooks(**{option: value}))  # type: ignore[arg-type]


class _Custom(Provider):
    """A scheme of the user's own: no preset name to suggest."""


@pytest.mark.parametrize(
    ("cls", "said"),
    [
        (GitHub, "provider GitHub is a class; pass an instance: GitHub(), or its name 'github'"),
        (Narada, "provider Narada is a class; pass an instance: Narada(), or its name 'narada'"),
        (_Custom, "provider _Custom is a class; pass an instance: _Custom()"),
    ],
)
@pytest.mark.parametrize("given", ["keyword", "config"])
def test_a_provider_class_says_to_pass_an_instance(
    make_app: Callable[..., Flask], cls: type[Provider], said: str, given: str
) -> None:
    """``provider=Stripe`` (the class) was an "unknown provider", which lists the names it is one of."""
    with pytest.raises(ConfigError, match=f"^{re.escape(said)}$"):
        if given == "keyword":
            make_app(Hooks(provider=cls))  # type: ignore[arg-type]
        else:
            make_app(Hooks(), HOOKS_PROVIDER=cls)


#: Presets whose signature covers a timestamp, with a secret each accepts.
TIMESTAMPED = {
    "stripe": "whsec_test",
    "slack": "slack-secret",
    "standard-webhooks": WHSEC,
    "svix": WHSEC,
    "itsdangerous": "shared",
    "noukai": "nk",
}


@pytest.mark.parametrize("provider", sorted(TIMESTAMPED))
@pytest.mark.parametrize(
    ("options", "config", "needed"),
    [
        ({"dedupe_ttl": 60}, {}, "600"),
        ({"tolerance": 86400}, {}, "172800"),
        ({}, {"HOOKS_DEDUPE_TTL": 500}, "600"),
        ({}, {"HOOKS_TOLERANCE": (3600, 0), "HOOKS_DEDUPE_TTL": 1800}, "3600"),
    ],
    ids=["keyword-ttl", "keyword-tolerance", "config-ttl", "config-pair"],
)
def test_a_tolerance_longer_than_the_dedupe_ttl_is_a_config_error(
    make_app: Callable[..., Flask],
    provider: str,
    options: dict[str, Any],
    config: dict[str, Any],
    needed: str,
) -> None:
    """A delivery re-sent once its id is forgotten but while its timestamp is in time would run again."""
    hooks = Hooks(provider=provider, secret=TIMESTAMPED[provider], store="memory://", **options)
    expected = rf"HOOKS_TOLERANCE .* HOOKS_DEDUPE_TTL .* at least {needed} "
    with pytest.raises(ConfigError, match=expected) as info:
        make_app(hooks, **config)
    assert "signs_timestamp" not in str(info.value)  # a preset's user has nothing to opt out of


@pytest.mark.parametrize("provider", ["generic", "github", "noukai", "flowstep", "itsdangerous", "narada"])
def test_a_secret_utf8_cannot_encode_is_a_config_error(make_app: Callable[..., Flask], provider: str) -> None:
    """A lone surrogate, as os.environ reads undecodable bytes: no sender keys with it."""
    with pytest.raises(ConfigError, match="lone surrogate") as info:
        make_app(Hooks(provider=provider, secret="sk-\udcff-x", store="memory://"))
    assert "sk-" not in str(info.value)


def test_a_named_receiver_is_told_its_own_keys(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(name="billing", provider="stripe", store="memory://")
    with pytest.raises(ConfigError, match=r"HOOKS_BILLING_TOLERANCE .* HOOKS_BILLING_DEDUPE_TTL"):
        make_app(hooks, HOOKS_BILLING_SECRET="whsec_x", HOOKS_DEDUPE_TTL=60)  # the app-wide TTL applies
    ok = Hooks(name="billing", provider="stripe", store="memory://", dedupe_ttl=600)  # exactly the window
    assert ok.receiver(make_app(ok, HOOKS_BILLING_SECRET="whsec_x")).settings.dedupe_ttl == 600


@pytest.mark.parametrize(
    "provider",
    [Generic(), GitHub(), Shopify(), Narada(token="t"), FlowStep(), Noukai(signed="body")],
    ids=lambda p: p.name,
)
def test_schemes_without_a_timestamp_take_any_dedupe_ttl(
    make_app: Callable[..., Flask], provider: Provider
) -> None:
    hooks = Hooks(provider=provider, store="memory://", dedupe_ttl=1, tolerance=3600)
    assert hooks.receiver(make_app(hooks)).settings.dedupe_ttl == 1


def test_the_defaults_leave_no_replay_window() -> None:
    assert 2 * DEFAULTS["tolerance"] <= DEFAULTS["dedupe_ttl"]


class Unknown(Provider):
    """A custom scheme: whether it checks a timestamp only its author knows."""

    name = "unknown"

    def verify(
        self, headers: HeaderMap, body: bytes, keys: Any, *, now: float, tolerance: Tolerance
    ) -> Verified:
        raise NotImplementedError

    def parse(self, headers: HeaderMap, body: bytes) -> Parsed:
        raise NotImplementedError

    def sign(self, outgoing: Outgoing, key: Any) -> SignedRequest:
        raise NotImplementedError


def test_a_custom_scheme_is_told_how_to_say_it_checks_no_timestamp(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="signs_timestamp = False"):
        make_app(Hooks(provider=Unknown(), store="memory://", dedupe_ttl=60))

    class Untimed(Unknown):
        signs_timestamp = False

    make_app(Hooks(provider=Untimed(), store="memory://", dedupe_ttl=60))


def test_init_app_with_a_blueprint_says_it_takes_the_app() -> None:
    """It raised AttributeError: 'Blueprint' object has no attribute 'extensions'."""
    from flask import Blueprint

    with pytest.raises(TypeError, match=r"^init_app\(\) takes a Flask app, got Blueprint; .* with the app"):
        Hooks().init_app(Blueprint("webhooks", __name__))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^init_app\(\) takes a Flask app, got Blueprint"):
        Hooks(Blueprint("webhooks", __name__))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^init_app\(\) takes a Flask app, got NoneType$"):
        Hooks().init_app(None)  # type: ignore[arg-type]


def test_init_app_takes_current_app(make_app: Callable[..., Flask]) -> None:
    """It raised TypeError: cannot create weak reference to 'LocalProxy' object."""
    from flask import current_app

    app = make_app()
    hooks = Hooks(store="memory://")
    with app.app_context():
        hooks.init_app(current_app)  # type: ignore[arg-type]
    hooks.on("*")(lambda event: None)
    assert generic_post(app.test_client(), {"id": "evt_1", "type": "a.b"}).status_code == 200


def test_receiver_before_init_app_says_what_to_do(tmp_path: Path) -> None:
    app = Flask("z", instance_path=str(tmp_path))
    with pytest.raises(RuntimeError, match="init_app"):
        Hooks().receiver(app)


# A newcomer without the optional extra -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "missing", "said"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "pip install 'flask-webhooks[redis]'"),
        ("postgresql+psycopg2://u@127.0.0.1/db", None, "needs the psycopg2 driver: pip install psycopg2"),
        ("mysql+pymysql://u@127.0.0.1/db", None, "needs the pymysql driver: pip install pymysql"),
    ],
)
def test_a_store_without_its_library_names_the_extra_to_install(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, url: str, missing: str | None, said: str
) -> None:
    import importlib.util

    if missing is not None:
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a)
        )
    with pytest.raises(ConfigError, match=re.escape(said)):
        make_app(Hooks(), HOOKS_STORE=url)


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [
        ("mysql://u@127.0.0.1/db", "MySQLdb", "mysqlclient"),  # no package is called MySQLdb
        ("mariadb://u@127.0.0.1/db", "MySQLdb", "mysqlclient"),
        ("mysql+mysqlconnector://u@127.0.0.1/db", "mysql", "mysql-connector-python"),
    ],
)
def test_a_driver_whose_module_is_not_its_package_names_the_package(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, url: str, module: str, package: str
) -> None:
    import sys

    pytest.importorskip("sqlalchemy")
    monkeypatch.setitem(sys.modules, module, None)  # what importing an absent module does
    with pytest.raises(ConfigError, match=re.escape(f" driver: pip install {package}")):
        make_app(Hooks(), HOOKS_STORE=url)


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("redis+sentinel://127.0.0.1:26379/mymaster", "for Redis Sentinel, pass its client"),
        ("postgresql+nodriver://u@127.0.0.1/db", "postgresql+psycopg://"),
        ("cockroach+psycopg://u@127.0.0.1/db", "postgresql+psycopg://"),
    ],
)
def test_a_scheme_no_store_takes_is_a_config_error_naming_the_schemes(
    make_app: Callable[..., Flask], url: str, hint: str
) -> None:
    """A ``+`` scheme goes to SQLAlchemy: one with no dialect raised its NoSuchModuleError."""
    pytest.importorskip("sqlalchemy")
    scheme = url.partition(":")[0]
    with pytest.raises(ConfigError, match=f"unknown store URL .*{re.escape(scheme)}") as raised:
        make_app(Hooks(), HOOKS_STORE=url)
    assert "sqlite:///, redis://, rediss://, unix://, memory://" in str(raised.value)
    assert hint in str(raised.value)


def test_an_engine_as_the_store_says_to_wrap_it_in_sql_store(make_app: Callable[..., Flask]) -> None:
    sa = pytest.importorskip("sqlalchemy")
    engine = sa.create_engine("sqlite://")
    with pytest.raises(ConfigError, match=r"not Engine; an engine .* goes in flask_hooks\.stores\.sql"):
        make_app(Hooks(store=engine))  # type: ignore[arg-type]


def test_a_queue_without_its_library_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from flask_hooks.defer import CeleryQueue, RQQueue
    from flask_hooks.defer import celery as celery_adapter

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rq" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match=re.escape("pip install 'flask-webhooks[rq]'")):
        RQQueue(app="pkg:create_app")
    monkeypatch.setattr(celery_adapter, "_registered", False)
    monkeypatch.setitem(sys.modules, "celery", None)  # what importing an absent package does
    with pytest.raises(ConfigError, match=re.escape("pip install 'flask-webhooks[celery]'")):
        CeleryQueue()


def test_a_redis_plus_scheme_is_explained_without_sqlalchemy(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the [sql] extra, redis+sentinel:// said to install SQLAlchemy, which cannot help."""
    import sys

    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ConfigError, match="for Redis Sentinel, pass its client") as raised:
        make_app(Hooks(), HOOKS_STORE="redis+sentinel://127.0.0.1:26379/mymaster")
    assert "pip install" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql+psycopg://u@127.0.0.1/db", "postgresql"),
        ("postgres://u@127.0.0.1/db", "postgresql"),
        ("mysql+pymysql://u@127.0.0.1/db", "sql"),
    ],
)
def test_a_sql_url_without_sqlalchemy_names_the_extra_that_brings_its_driver(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    """[sql] then [postgresql] was two rounds of errors for one PostgreSQL URL."""
    import sys

    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "flask_hooks.stores.sql", raising=False)
    with pytest.raises(ConfigError, match=re.escape(f"pip install 'flask-webhooks[{extra}]'")):
        make_app(Hooks(), HOOKS_STORE=url)
