"""Provider presets; each is a class, and its short name a preset."""

from .base import Outgoing as Outgoing
from .base import Parsed as Parsed
from .base import Provider as Provider
from .base import SignedRequest as SignedRequest
from .base import Verified as Verified
from .generic import Generic as Generic
from .registry import PRESETS as PRESETS
from .registry import get_provider as get_provider
