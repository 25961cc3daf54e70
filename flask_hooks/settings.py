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
from .core.errors import ConfigError
from .core.providers import Provider, get_provider
from .core.providers.base import Tolerance
from .stores import DEFAULT_URL, DedupeStore

DEFAULTS: dict[str, Any] = {
    "url": "/webhooks",
    "provider": "generic",
    "secret": None,
    "store": DEFAULT_URL,
    "dedupe_ttl": 86400,
    "lease": 60,
    "tolerance": 300,
    "max_body": 1024 * 1024,
}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Settings:
    """One receiver's resolved settings."""

    name: str
    prefix: str
    url: str
    provider: Provider
    secrets: tuple[str, ...]
    store: str | DedupeStore
    dedupe_ttl: float
    lease: float
    tolerance: Tolerance
    max_body: int
    clock: Clock


def config_prefix(name: str) -> str:
    """``HOOKS_`` for the default receiver, ``HOOKS_STRIPE_`` for ``name="stripe"``."""
    if not _NAME.match(name):
        raise ConfigError(f"receiver name {name!r} must be an identifier")
    return "HOOKS_" if name == "hooks" else f"HOOKS_{name.upper()}_"


def _positive(key: str, value: Any, *, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, not {value!r}")
    return value


def _tolerance(key: str, value: Any) -> Tolerance:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        past, future = value
    else:
        past = future = value
    for part in (past, future):
        if isinstance(part, bool) or not isinstance(part, (int, float)) or part < 0:
            raise ConfigError(f"{key} must be seconds or a (past, future) pair, not {value!r}")
    return float(past), float(future)


def _secrets(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, (str, bytes)) else list(value)
    out = []
    for item in items:
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key} must be a non-empty string or a list of them (newest first)")
        out.append(item)
    return tuple(out)


def resolve(name: str, options: Mapping[str, Any], config: Mapping[str, Any]) -> Settings:
    """Merge keyword options over the app config over the defaults."""
    prefix = config_prefix(name)

    def pick(option: str) -> Any:
        if options.get(option) is not None:
            return options[option]
        key = prefix + option.upper()
        if config.get(key) is not None:
            return config[key]
        default = DEFAULTS[option]
        if option == "url" and name != "hooks":
            return f"{default}/{name}"
        return default

    url = pick("url")
    if not isinstance(url, str) or not url.startswith("/"):
        raise ConfigError(f"{prefix}URL must be a path starting with '/', not {url!r}")
    provider = get_provider(pick("provider"))
    secrets = _secrets(prefix + "SECRET", pick("secret"))
    if provider.needs_secret and not secrets:
        raise ConfigError(
            f"receiver {name!r} has no secret: set {prefix}SECRET (or pass secret=...);"
            " deliveries are never accepted unverified"
        )
    return Settings(
        name=name,
        prefix=prefix,
        url=url,
        provider=provider,
        secrets=secrets,
        store=pick("store"),
        dedupe_ttl=_positive(prefix + "DEDUPE_TTL", pick("dedupe_ttl")),
        lease=_positive(prefix + "LEASE", pick("lease")),
        tolerance=_tolerance(prefix + "TOLERANCE", pick("tolerance")),
        max_body=_positive(prefix + "MAX_BODY", pick("max_body"), integer=True),
        clock=options.get("clock") or system_clock,
    )
