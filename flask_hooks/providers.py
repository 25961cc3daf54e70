"""The provider classes, importable as ``flask_hooks.providers.Stripe`` etc.

``Hooks(provider="stripe")`` is the short form of
``Hooks(provider=Stripe())``; use a class when a preset takes options
(``Narada(token=..., secret=...)``, ``Noukai(signed="timestamp.body")``).
"""

from .core.providers import PRESETS as PRESETS
from .core.providers import FlowStep as FlowStep
from .core.providers import Generic as Generic
from .core.providers import GitHub as GitHub
from .core.providers import ItsDangerous as ItsDangerous
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
