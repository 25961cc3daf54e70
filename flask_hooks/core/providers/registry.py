"""Preset names -> provider classes, and the resolver for ``HOOKS_PROVIDER``."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Provider
from .generic import Generic

#: Preset name -> class. Each preset module is listed here once.
PRESETS: dict[str, type[Provider]] = {
    "generic": Generic,
}


def get_provider(spec: str | Provider) -> Provider:
    """Resolve ``HOOKS_PROVIDER`` (a preset name or an instance)."""
    if isinstance(spec, Provider):
        return spec
    if isinstance(spec, str) and spec.lower() in PRESETS:
        return PRESETS[spec.lower()]()
    known = ", ".join(sorted(PRESETS))
    raise ConfigError(f"unknown provider {spec!r}; use one of {known} or a Provider instance")
