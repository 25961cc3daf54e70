"""Preset names -> provider classes, and the resolver for ``HOOKS_PROVIDER``."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Provider
from .flowstep import FlowStep
from .generic import Generic
from .github import GitHub
from .narada import Narada
from .noukai import Noukai
from .shopify import Shopify
from .signed import ItsDangerous
from .slack import Slack
from .standard import StandardWebhooks, Svix
from .stripe import Stripe

#: Preset name -> class. Each preset module is listed here once.
PRESETS: dict[str, type[Provider]] = {
    "generic": Generic,
    "noukai": Noukai,
    "narada": Narada,
    "flowstep": FlowStep,
    "standard-webhooks": StandardWebhooks,
    "svix": Svix,
    "stripe": Stripe,
    "github": GitHub,
    "shopify": Shopify,
    "slack": Slack,
    "itsdangerous": ItsDangerous,
}


def get_provider(spec: str | Provider) -> Provider:
    """Resolve ``HOOKS_PROVIDER`` (a preset name or an instance)."""
    if isinstance(spec, Provider):
        return spec
    if isinstance(spec, str) and spec.lower() in PRESETS:
        return PRESETS[spec.lower()]()
    if isinstance(spec, type) and issubclass(spec, Provider):  # Hooks(provider=Stripe)
        names = [name for name, cls in PRESETS.items() if cls is spec]
        short = f", or its name {names[0]!r}" if names else ""
        raise ConfigError(f"provider {spec.__name__} is a class; pass an instance: {spec.__name__}(){short}")
    known = ", ".join(sorted(PRESETS))
    raise ConfigError(f"unknown provider {spec!r}; use one of {known} or a Provider instance")
