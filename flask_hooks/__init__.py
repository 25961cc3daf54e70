"""Receive webhooks correctly: verified, deduplicated, acknowledged after storage.

The errors, ``Event`` and ``Provider`` come from the sans-I/O core and
import no web framework; ``Hooks``, ``Receiver`` and the inbox's
``Inbox``, ``Delivery`` and ``Attempt`` import Flask, so they are loaded on
first use (PEP 562): ``import flask_hooks``, like ``flask_hooks.core``,
stays free of Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.errors import BodyTooLarge as BodyTooLarge
from .core.errors import ConfigError as ConfigError
from .core.errors import HookError as HookError
from .core.errors import InFlight as InFlight
from .core.errors import LeaseLost as LeaseLost
from .core.errors import PayloadError as PayloadError
from .core.errors import QueueUnavailable as QueueUnavailable
from .core.errors import Retry as Retry
from .core.errors import StoreUnavailable as StoreUnavailable
from .core.errors import VerificationError as VerificationError
from .core.event import Event as Event
from .core.event import Headers as Headers
from .core.providers import Provider as Provider

if TYPE_CHECKING:
    from . import signals as signals
    from .extension import Hooks as Hooks
    from .extension import Receiver as Receiver
    from .inbox import Attempt as Attempt
    from .inbox import Delivery as Delivery
    from .inbox import Inbox as Inbox

__version__ = "0.2.0.dev0"

_LAZY = {
    "Hooks": "extension",
    "Receiver": "extension",
    "Inbox": "inbox",
    "Delivery": "inbox",
    "Attempt": "inbox",
    "signals": "signals",
}


__all__ = [
    "Attempt",
    "BodyTooLarge",
    "ConfigError",
    "Delivery",
    "Event",
    "Headers",
    "HookError",
    "Hooks",
    "InFlight",
    "Inbox",
    "LeaseLost",
    "PayloadError",
    "Provider",
    "QueueUnavailable",
    "Receiver",
    "Retry",
    "StoreUnavailable",
    "VerificationError",
    "signals",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# Hidden from type checkers: they take the imports above, so a misspelled name is an error
# there rather than an ``Any`` a module ``__getattr__`` would give.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'flask_hooks' has no attribute {name!r}")
        import importlib

        value = importlib.import_module(f".{module}", __name__)
        return value if name == module else getattr(value, name)
