"""Receive webhooks correctly: verified, deduplicated, acknowledged after storage."""

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
from .extension import Hooks as Hooks
from .extension import Receiver as Receiver

__version__ = "0.1.0"
