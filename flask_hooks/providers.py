"""The provider classes, and what a custom provider is written with.

``Hooks(provider="stripe")`` is the short form of
``Hooks(provider=Stripe())``; use a class when a preset takes options
(``Narada(token=..., secret=...)``, ``Noukai(signed="timestamp.body")``).

A custom scheme subclasses :class:`Provider` (or :class:`HmacProvider`,
whose keys are :class:`HmacKey`\\ s) and builds its results from the value
types and helpers below; everything it needs is importable from here.
"""

from .core.event import HeaderMap as HeaderMap
from .core.providers import PRESETS as PRESETS
from .core.providers import FlowStep as FlowStep
from .core.providers import Generic as Generic
from .core.providers import GitHub as GitHub
from .core.providers import HmacKey as HmacKey
from .core.providers import HmacProvider as HmacProvider
from .core.providers import ItsDangerous as ItsDangerous
from .core.providers import Key as Key
from .core.providers import Narada as Narada
from .core.providers import Noukai as Noukai
from .core.providers import Outgoing as Outgoing
from .core.providers import Parsed as Parsed
from .core.providers import Provider as Provider
from .core.providers import Shopify as Shopify
from .core.providers import SignedRequest as SignedRequest
from .core.providers import Slack as Slack
from .core.providers import StandardWebhooks as StandardWebhooks
from .core.providers import Stripe as Stripe
from .core.providers import Svix as Svix
from .core.providers import Verified as Verified
from .core.providers._json import MAX_DEPTH as MAX_DEPTH
from .core.providers._json import dump as dump
from .core.providers._json import load_json as load_json
from .core.providers._json import load_object as load_object
from .core.providers._parsing import from_base64 as from_base64
from .core.providers._parsing import from_hex as from_hex
from .core.providers.base import Tolerance as Tolerance
from .core.providers.base import check_timestamp as check_timestamp
from .core.providers.base import require_str as require_str
