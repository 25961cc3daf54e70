"""What a :class:`~flask_hooks.core.pipeline.Pipeline` is built from.

One receiver's settings, resolved once into a frozen object, and the
protocol of the lease keeper that keeps its claims alive while handlers
run. Kept apart from the pipeline so what a transport must provide reads
in one place; import :class:`ReceiverConfig` from either module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from .clock import Clock
from .providers.base import Provider, Tolerance
from .routing import Router
from .store import DedupeStore


class Leases(Protocol):
    """Keeps the claims of running handlers alive (``flask_hooks.stores.leases``)."""

    def hold(
        self, store: DedupeStore, ns: str, id: str, token: str, *, lease: float, clock: Clock
    ) -> object: ...

    def drop(self, held: Any) -> None: ...

    def after_drop(self, ns: str, id: str, step: Callable[[], None]) -> bool: ...

    def lost(self, held: Any) -> bool:
        """Whether a renewal found the claim ended while its handlers ran: taken over, or
        completed by its holder just before (only a holder that then failed can tell)."""


class NoLeases:
    """Renews nothing: a claim lasts its lease (for pipelines used without a keeper)."""

    def hold(self, store: DedupeStore, ns: str, id: str, token: str, *, lease: float, clock: Clock) -> object:
        return None

    def drop(self, held: Any) -> None:
        return None

    def after_drop(self, ns: str, id: str, step: Callable[[], None]) -> bool:
        return False

    def lost(self, held: Any) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class ReceiverConfig:
    """Everything the pipeline needs about one receiver, resolved once."""

    name: str
    provider: Provider
    keys: tuple[Any, ...] = dataclasses.field(repr=False)  # credentials
    store: DedupeStore
    router: Router
    dedupe_ttl: float
    lease: float
    tolerance: Tolerance
    clock: Clock
    #: What the store keys records under: app and receiver (``HOOKS_NAMESPACE``).
    ns: str = ""
    leases: Leases = dataclasses.field(default_factory=NoLeases)
    #: Seconds every verified delivery is kept for the inbox; 0 keeps none.
    retention: float = 0.0
    #: The configured secrets as text: blanked in a failed handler's traceback.
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.ns:
            object.__setattr__(self, "ns", self.name)
