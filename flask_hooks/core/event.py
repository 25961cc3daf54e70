"""The immutable view of one verified delivery that handlers receive."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive header mapping.

    Built once from whatever the transport gives (a dict, werkzeug
    ``Headers``, a list of pairs) so the core never depends on it.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = {}
        for key, value in pairs:
            # Keep the first of repeated headers, like most servers do.
            self._items.setdefault(str(key).lower(), str(value))

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclasses.dataclass(frozen=True)
class Event:
    """One verified, parsed delivery.

    ``body`` is the exact bytes that were verified; ``payload`` was parsed
    from those same bytes. ``secret_index`` is the position of the secret
    that matched (0 is the newest), so rotations can be watched.
    """

    id: str
    type: str
    payload: Any
    body: bytes
    headers: Headers
    provider: str
    receiver: str
    timestamp: float | None = None
    received_at: float = 0.0
    attempt: int | None = None
    secret_index: int = 0

    def __repr__(self) -> str:
        return f"<Event {self.receiver}:{self.type} id={self.id!r}>"
