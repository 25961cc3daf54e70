"""Provider presets; each is a class, and its short name a preset."""

from .base import HmacKey as HmacKey
from .base import HmacProvider as HmacProvider
from .base import Key as Key
from .base import Outgoing as Outgoing
from .base import Parsed as Parsed
from .base import Provider as Provider
from .base import SignedRequest as SignedRequest
from .base import Verified as Verified
from .flowstep import FlowStep as FlowStep
from .generic import Generic as Generic
from .github import GitHub as GitHub
from .narada import Narada as Narada
from .narada import NaradaKey as NaradaKey
from .noukai import Noukai as Noukai
from .registry import PRESETS as PRESETS
from .registry import get_provider as get_provider
from .shopify import Shopify as Shopify
from .signed import ItsDangerous as ItsDangerous
from .slack import Slack as Slack
from .standard import StandardWebhooks as StandardWebhooks
from .standard import Svix as Svix
from .stripe import Stripe as Stripe
