"""The immutable view of one verified delivery that handlers receive."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, overload


class HeaderMap(Protocol):
    """What the core reads headers from: case-insensitive ``get`` and ``in``.

    werkzeug's ``request.headers`` is one (it iterates as pairs, so it is
    no ``Mapping``), and so is :class:`Headers`, built from a plain dict.
    """

    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, default: str, /) -> str: ...

    def __contains__(self, key: str, /) -> bool: ...


def header_pairs(headers: HeaderMap) -> list[tuple[str, str]]:
    """Any header object's (name, value) pairs: a mapping's items, or werkzeug's pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), str(v)) for k, v in items]  # type: ignore[union-attr]


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive header mapping built from a dict or pairs.

    For transports that hand over plain data (tests, the plain-WSGI
    receiver, a replay); Flask passes werkzeug's ``request.headers``.
    A repeated header's values are joined with ``","``, as WSGI servers
    (gunicorn, werkzeug's) join them: the core decides as the Flask receiver does.
    Iterated, it gives the (lower-cased) names, as a mapping does; werkzeug's
    headers give pairs: ``.items()`` reads both the same way.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = {}
        for key, value in pairs:
            name, text = str(key).lower(), str(value)
            self._items[name] = f"{self._items[name]},{text}" if name in self._items else text

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


class Event(NamedTuple):
    """One verified, parsed delivery.

    ``body`` is the exact bytes that were verified; ``payload`` was parsed
    from those same bytes. ``secret_index`` is the position of the secret
    that matched (0 is the newest), so rotations can be watched.

    A named tuple, so it is immutable and cheap to build on every request;
    its fields are read by name.
    """

    id: str
    type: str
    payload: Any
    body: bytes
    #: werkzeug's ``request.headers`` in a request, a :class:`Headers` in a replay or a
    #: queue's worker: read them with ``get``, ``in``, ``[]`` or ``.items()``, which both
    #: answer alike (iterated, werkzeug's give pairs, a ``Headers`` its names).
    headers: HeaderMap
    provider: str
    receiver: str
    timestamp: float | None = None
    received_at: float = 0.0
    attempt: int | None = None
    secret_index: int = 0
    #: True when an operator's replay runs the handlers, not the sender.
    replayed: bool = False

    def __repr__(self) -> str:
        return f"<Event {self.receiver}:{self.type} id={self.id!r}>"


def own_payload(event: Event, parse: Callable[[HeaderMap, bytes], Any]) -> Event:
    """``event`` for a handler after the first of a delivery, with the payload of its own.

    The payload is a plain dict or list, which a handler may change. The next
    handler must not see the change: on the sender's retry, where the first
    handler is not run again, it would see another payload than on the first
    attempt (and a deferred one's job would carry the change). So each handler
    after the first gets the payload parsed again from the same bytes by
    ``parse`` (the provider's; a copy would have limits of its own: a nested
    payload the parser takes can be too deep for ``copy.deepcopy``).
    """
    if not isinstance(event.payload, (dict, list)):
        return event
    return event._replace(payload=parse(event.headers, event.body).payload)
