"""The immutable view of one verified delivery that handlers receive."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol

_SPECIAL = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}
#: Servers set these two empty when the request has none; read that as absent.
_SPECIAL_NAMES = frozenset(_SPECIAL.values())


@functools.lru_cache(maxsize=512)
def _environ_key(name: str) -> str:
    """``X-Hub-Signature-256`` -> ``HTTP_X_HUB_SIGNATURE_256`` (PEP 3333 naming)."""
    key = name.upper().replace("-", "_")
    return key if key in _SPECIAL else "HTTP_" + key


class HeaderMap(Protocol):
    """What the core reads headers from: case-insensitive ``get`` and ``in``.

    werkzeug's ``request.headers`` is one (it iterates as pairs, so it is
    no ``Mapping``), and so is :class:`Headers`, built from a plain dict.
    """

    def get(self, key: str, /) -> str | None: ...

    def __contains__(self, key: str, /) -> bool: ...


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive header mapping.

    Built from whatever the transport gives (a dict, a list of pairs) so
    the core never depends on it; :meth:`from_environ` reads a WSGI
    environ in place, so a delivery costs no copy of its headers.
    """

    __slots__ = ("_environ", "_items")

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._environ: Mapping[str, Any] | None = None
        self._items: dict[str, str] | None = {}
        for key, value in pairs:
            # Keep the first of repeated headers, like most servers do.
            self._items.setdefault(str(key).lower(), str(value))

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        """The request headers of a WSGI environ, looked up lazily."""
        self = cls.__new__(cls)
        self._environ, self._items = environ, None
        return self

    def _dict(self) -> dict[str, str]:
        if self._items is None:
            assert self._environ is not None
            items = {}
            for key, value in self._environ.items():
                if key.startswith("HTTP_"):
                    items[key[5:].replace("_", "-").lower()] = str(value)
                elif key in _SPECIAL and value:
                    items[_SPECIAL[key]] = str(value)
            self._items = items
        return self._items

    def __getitem__(self, key: str) -> str:
        value: str | None = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        if self._items is None:  # built by from_environ and not yet iterated
            assert self._environ is not None
            value = self._environ.get(_environ_key(key))
            return default if value is None or (value == "" and key.lower() in _SPECIAL_NAMES) else value
        return self._items.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"Headers({self._dict()!r})"


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
    headers: Headers
    provider: str
    receiver: str
    timestamp: float | None = None
    received_at: float = 0.0
    attempt: int | None = None
    secret_index: int = 0

    def __repr__(self) -> str:
        return f"<Event {self.receiver}:{self.type} id={self.id!r}>"
