"""Receiver settings: keyword arguments > ``HOOKS_[NAME_]*`` config > defaults.

Resolved once at ``init_app`` into a frozen object, so nothing reads the
config per request and a wrong value fails at start-up.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .core.clock import Clock, system_clock
from .core.durations import MAX_SECONDS, is_seconds, shown
from .core.errors import ConfigError
from .core.ids import is_plain
from .core.providers import PRESETS, Provider, get_provider
from .core.providers.base import Tolerance
from .stores import DEFAULT_URL, DedupeStore
from .stores.url import masked_url

DEFAULTS: dict[str, Any] = {
    "url": "/webhooks",
    "provider": "generic",
    "secret": None,
    "store": DEFAULT_URL,
    "dedupe_ttl": 86400,
    "lease": 60,
    "tolerance": 300,
    "max_body": 1024 * 1024,
    "namespace": None,
    "retention": None,  # 7 days, or the dedupe TTL when that is longer
}

DEFAULT_RETENTION = 7 * 86400

#: Settings a second receiver never borrows from ``HOOKS_*``: its own credentials,
#: scheme and URL. Every other option falls back to the app-wide key.
_OWN = frozenset({"url", "provider", "secret"})

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

#: The presets' classes: a custom provider's replay-window error also says how to opt out.
_PRESET_TYPES = frozenset(PRESETS.values())


@dataclasses.dataclass(frozen=True)
class Settings:
    """One receiver's resolved settings; the repr shows no secret and no store password."""

    name: str
    prefix: str
    url: str
    provider: Provider
    secrets: tuple[str, ...] = dataclasses.field(repr=False)
    store: str | DedupeStore = dataclasses.field(repr=False)
    dedupe_ttl: float
    lease: float
    tolerance: Tolerance
    max_body: int
    clock: Clock
    #: What the store keys this receiver's records under (``HOOKS_NAMESPACE``).
    namespace: str
    #: Seconds every verified delivery is kept for the inbox (0: none).
    retention: float

    def __repr__(self) -> str:
        """The dataclass repr, with the secrets counted and the store URL masked."""
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr]
        store = masked_url(self.store) if isinstance(self.store, str) else self.store
        return f"Settings({', '.join(shown)}, store={store!r}, secrets=<{len(self.secrets)} hidden>)"


def config_prefix(name: str) -> str:
    """``HOOKS_`` for the default receiver, ``HOOKS_STRIPE_`` for ``name="stripe"``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # "$" would let "stripe\n" pass
        raise ConfigError(f"receiver name {name!r} must be an identifier")
    return "HOOKS_" if name == "hooks" else f"HOOKS_{name.upper()}_"


#: The largest body limit: bodies are read into memory (and ``sys.maxsize`` as
#: "no limit" overflows the reader).
MAX_BODY_LIMIT = 1 << 30


def _positive(key: str, value: Any, *, integer: bool = False, most: float = MAX_SECONDS) -> Any:
    if not is_seconds(value, integer=integer) or not 0 < value <= most:
        what = "a positive whole number" if integer else "a positive, finite number"
        raise ConfigError(f"{key} must be {what} of at most {most:.0f}, not {shown(value)}")
    return value


def _tolerance(key: str, value: Any) -> Tolerance:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        past, future = value
    else:
        past = future = value
    for part in (past, future):
        if not is_seconds(part) or not 0 <= part <= MAX_SECONDS:
            raise ConfigError(f"{key} must be seconds or a (past, future) pair, not {shown(value)}")
    return float(past), float(future)


def _decoded(key: str, secret: bytes, provider: Provider) -> str:
    """A secret given as bytes, as the text its provider keys with (:meth:`Provider.secret_text`)."""
    try:
        return provider.secret_text(secret)
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: a secret given as bytes must be UTF-8 text") from None


def _secrets(key: str, value: Any, provider: Provider) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (str, bytes, list, tuple)):
        # from_prefixed_env() parses values as JSON: FLASK_HOOKS_SECRET=12345 is an int.
        kind = type(value).__name__
        raise ConfigError(f"{key} must be a string or a list of strings (newest first), not {kind}")
    items = [value] if isinstance(value, (str, bytes)) else list(value)
    out = []
    for item in items:
        if isinstance(item, bytes) and item:
            item = _decoded(key, item, provider)
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key} must be a non-empty string or a list of them (newest first)")
        out.append(item)
    return tuple(out)


def resolve(
    name: str, options: Mapping[str, Any], config: Mapping[str, Any], *, import_name: str = ""
) -> Settings:
    """Merge keyword options over ``HOOKS_<NAME>_*`` over ``HOOKS_*`` over the defaults.

    ``url``, ``provider`` and ``secret`` stop at the receiver's own keys: a
    second receiver that silently borrowed the first one's secret would
    accept the other sender's deliveries.
    """
    prefix = config_prefix(name)

    def pick(option: str) -> Any:
        if options.get(option) is not None:
            return options[option]
        keys = [prefix + option.upper()]
        if option not in _OWN and prefix != "HOOKS_":
            keys.append("HOOKS_" + option.upper())
        for key in keys:
            if config.get(key) is not None:
                return config[key]
        default = DEFAULTS[option]
        if option == "url" and name != "hooks":
            return f"{default}/{name}"
        return default

    url = pick("url")
    if not isinstance(url, str) or not url.startswith("/"):
        raise ConfigError(f"{prefix}URL must be a path starting with '/', not {url!r}")
    if "?" in url or "#" in url:  # the rule would never match: every delivery a 404
        raise ConfigError(
            f"{prefix}URL is a path, matched without the query string: {url!r} has a '?' or '#'"
            " that no request path has"
        )
    if "<" in url or ">" in url or not is_plain(url):  # a variable part, a newline, a NUL
        raise ConfigError(f"{prefix}URL must be a plain path, no variable part or control character: {url!r}")
    provider = get_provider(pick("provider"))
    secrets = _secrets(prefix + "SECRET", pick("secret"), provider)
    if provider.needs_secret and not secrets:
        raise ConfigError(
            f"receiver {name!r} has no secret: set {prefix}SECRET (or pass secret=...);"
            " deliveries are never accepted unverified"
        )
    dedupe_ttl = _positive(prefix + "DEDUPE_TTL", pick("dedupe_ttl"))
    tolerance = _tolerance(prefix + "TOLERANCE", pick("tolerance"))
    if provider.signs_timestamp:
        _check_replay_window(prefix, provider, dedupe_ttl, tolerance)
    return Settings(
        name=name,
        prefix=prefix,
        url=url,
        provider=provider,
        secrets=secrets,
        store=_store(prefix + "STORE", pick("store")),
        dedupe_ttl=dedupe_ttl,
        lease=_positive(prefix + "LEASE", pick("lease")),
        tolerance=tolerance,
        max_body=_positive(prefix + "MAX_BODY", pick("max_body"), integer=True, most=MAX_BODY_LIMIT),
        clock=checked_clock(options.get("clock")),
        namespace=_namespace(prefix + "NAMESPACE", pick("namespace"), import_name, name),
        retention=_retention(prefix, pick("retention"), dedupe_ttl),
    )


def checked_clock(clock: Any) -> Clock:
    """The receiver's clock, read once now (unless it cannot be read yet: it may need an
    app context): one that cannot be called would fail every delivery, and one reading
    NaN or infinity would find every record expired (each copy of a delivery run again)."""
    if clock is None:
        return system_clock
    if not callable(clock):
        raise ConfigError(f"clock must be a callable returning seconds since the epoch, not {shown(clock)}")
    try:
        now = clock()
    except Exception as exc:
        if type(exc) is RuntimeError:  # Flask's "outside of application context": read it later
            return clock  # type: ignore[no-any-return]
        raise ConfigError(f"clock() raised {type(exc).__name__}") from exc
    if not is_seconds(now) or not abs(now) < 2**53:
        raise ConfigError(f"clock() must return a finite number of seconds, not {shown(now)}")
    return clock  # type: ignore[no-any-return]


def _check_replay_window(prefix: str, provider: Provider, dedupe_ttl: float, tolerance: Tolerance) -> None:
    """The dedupe TTL must cover every moment a delivery's signed timestamp is in time.

    A timestamp up to ``future`` seconds ahead, received now, stays in time
    for ``past + future`` seconds; re-sent after its id was forgotten, it
    would verify and run its handlers again.
    """
    past, future = tolerance
    if past + future <= dedupe_ttl:
        return
    hint = "; a scheme that checks none sets signs_timestamp = False"
    hint = "" if type(provider) in _PRESET_TYPES else hint
    raise ConfigError(
        f"{prefix}TOLERANCE ({past:g} s past + {future:g} s future) is longer than"
        f" {prefix}DEDUPE_TTL ({dedupe_ttl:g} s): a {provider.name} delivery re-sent after its id"
        f" is forgotten would still be in time and run again; set {prefix}DEDUPE_TTL to at least"
        f" {past + future:g} or lower {prefix}TOLERANCE{hint}"
    )


def _retention(prefix: str, value: Any, dedupe_ttl: Any) -> float:
    """At least the dedupe TTL (a delivery that still counts as a duplicate is
    still shown); 0 keeps no delivery at all."""
    if value is None:
        return float(max(DEFAULT_RETENTION, dedupe_ttl))
    if value == 0 and is_seconds(value):
        return 0.0
    retention = float(_positive(prefix + "RETENTION", value))
    if retention < dedupe_ttl:
        raise ConfigError(
            f"{prefix}RETENTION ({value!r} s) is shorter than {prefix}DEDUPE_TTL ({dedupe_ttl!r} s):"
            " a delivery is kept at least as long as it counts as a duplicate"
        )
    return retention


def _store(key: str, value: Any) -> str | DedupeStore:
    """A store URL or a store; anything else (an engine, a client, a path) says what to pass."""
    if isinstance(value, (str, DedupeStore)):
        return value
    what = f"the class {value.__name__}" if isinstance(value, type) else type(value).__name__
    raise ConfigError(
        f"{key} must be a store URL (sqlite:///..., redis://..., memory://, a SQLAlchemy URL) or a"
        f" DedupeStore, not {what}; an engine or Flask-SQLAlchemy's db goes in"
        " flask_hooks.stores.sql.SqlStore(...)"
    )


def _namespace(key: str, value: Any, import_name: str, name: str) -> str:
    """``<app import name>:<receiver name>``, what the store keys records under.

    Two apps sharing one Redis or one SQLite file never answer each other's
    deliveries. ``HOOKS_NAMESPACE`` replaces the app part (two deployments
    of one app that must not share, or an app that was renamed); the
    receiver's name is always added, so receivers never share records.
    """
    app_part = import_name if value is None else value
    # A lone surrogate (a byte from_prefixed_env() could not decode) no store could write.
    if not isinstance(app_part, str) or len(app_part) > 200 or not is_plain(app_part):
        raise ConfigError(
            f"{key} must be text of at most 200 characters, without control characters, not {shown(value)}"
        )
    return f"{app_part}:{name}" if app_part else name
