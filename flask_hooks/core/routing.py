"""Event-type patterns and the ordered handler table.

``"a.b"`` matches ``a.b`` and its subtypes ``a.b.c``; ``"a.*"`` matches
everything below ``a``; ``"*"`` matches all. Matching keeps registration
order, so several handlers for one event run in the order they were
declared (gidgethub's router returns an unordered set; we do not).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .event import Event
from .ids import is_plain

Handler = Callable[[Event], Any]


def check_pattern(pattern: str) -> str:
    """Reject patterns that would silently never match (a type with a NUL, a lone
    surrogate or a control character is refused before routing, a 400)."""
    if not isinstance(pattern, str) or not pattern or pattern != pattern.strip() or not is_plain(pattern):
        raise ConfigError(f"invalid event pattern {pattern!r}")
    parts = pattern.split(".")
    if "" in parts or "*" in parts[:-1] or any("*" in p and p != "*" for p in parts):
        if "/" in pattern:  # a Shopify topic's
            raise ConfigError(
                f"invalid event pattern {pattern!r}: patterns part types at dots only, so name a"
                " topic with a slash whole ('orders/create'), or match every type with '*'"
            )
        raise ConfigError(f"invalid event pattern {pattern!r}: '*' may only be the last part")
    return pattern


def matches(pattern: str, type: str) -> bool:
    """Whether ``type`` falls under ``pattern``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return type.startswith(pattern[:-1])
    return type == pattern or type.startswith(pattern + ".")


def handler_name(func: Handler) -> str:
    """A name stable across processes, used to record each handler's success.

    A ``functools.partial`` is named after its function and a callable object
    after its class: their repr holds a memory address, which another worker
    or the next deploy does not share.
    """
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


def _check_runs_when_called(func: Handler) -> None:
    """Refuse handlers whose body does not run when called (``async def``, ``yield``).

    Called, they return a coroutine or a generator without running a line:
    the delivery would be answered 200 and recorded as done, its work never
    done, or done while its reply is read with a failure nobody sees.
    """
    call = type(func).__call__ if callable(func) else None  # a callable object's method
    for target in (inspect.unwrap(func), call):
        if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
            raise ConfigError(f"handler {handler_name(func)} is async: handlers are plain functions")
        if inspect.isgeneratorfunction(target):
            raise ConfigError(
                f"handler {handler_name(func)} is a generator (it yields): return its reply instead"
            )


@dataclasses.dataclass(frozen=True)
class Route:
    """One registered handler with its patterns and options."""

    func: Handler
    patterns: tuple[str, ...]
    name: str
    defer: Any = None
    #: Runs inside the store's transaction that records its success (SQL stores).
    atomic: bool = False

    def accepts(self, type: str) -> bool:
        return any(matches(p, type) for p in self.patterns)


class Router:
    """Routes in registration order."""

    #: How many event types' matches are remembered (types come from senders).
    cache_size = 1024

    def __init__(self) -> None:
        self.routes: list[Route] = []
        #: Type -> (how many routes there were, the matches among them).
        self._cache: dict[str, tuple[int, tuple[Route, ...]]] = {}
        #: Why ``atomic=True`` is refused from now on: a receiver was set up on a store
        #: that cannot run atomic handlers (``init_app`` sets it; empty: none was).
        self.refuse_atomic = ""

    def add(
        self,
        func: Handler,
        patterns: tuple[str, ...],
        *,
        name: str | None = None,
        defer: Any = None,
        atomic: bool = False,
    ) -> Route:
        """Append a route; its ``name`` is what its success is recorded under.

        ``name=`` names it explicitly (two different handlers given one name
        are an error). Different handlers with the same default name (two
        lambdas, functions made in a loop) all run: the second and later get
        ``#2``, ``#3``... in registration order, which is stable across the
        processes that import the same code.
        """
        if not patterns:
            raise ConfigError("on() needs at least one event pattern")
        if defer is not None and not all(callable(getattr(defer, a, None)) for a in ("job", "enqueue")):
            raise ConfigError(
                f"defer={defer!r} is not a queue; use flask_hooks.defer.CeleryQueue(...) or RQQueue(...)"
            )
        _check_runs_when_called(func)
        checked = tuple(check_pattern(p) for p in patterns)
        if name is not None:
            # Stores record each handler's success under its name, and logs quote it.
            if not isinstance(name, str) or not name or name != name.strip() or not is_plain(name):
                raise ConfigError(f"invalid handler name {name!r}")
            if any(r.name == name and r.func is not func for r in self.routes):
                raise ConfigError(f"two different handlers are both named {name!r}")
            known = next((r.name for r in self.routes if r.func is func and r.name != name), None)
            if known is not None:
                # Under two names it would run twice for an event both registrations match.
                raise ConfigError(
                    f"{handler_name(func)} is already registered as {known!r}: a function is one"
                    f" handler, recorded under one name; register it again with name={known!r}"
                )
        else:
            name = self._default_name(func)
        if atomic and defer is not None:
            raise ConfigError(
                "a handler is either atomic (in the database transaction) or deferred, not both"
            )
        if atomic and self.refuse_atomic:
            raise ConfigError(f"handler {name} is atomic=True, which {self.refuse_atomic}")
        route = Route(func, checked, name, defer, atomic)
        self.routes.append(route)
        self._cache.clear()
        return route

    def _default_name(self, func: Handler) -> str:
        base = handler_name(func)
        for route in self.routes:
            if route.func is func:  # the same handler again, for more patterns
                return route.name
        taken = {r.name for r in self.routes}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}#{n}"
        return name

    def match(self, type: str) -> tuple[Route, ...]:
        """Every route accepting ``type``, in order, each handler once."""
        # Routes are only ever appended, so their number tells whether a remembered match is
        # current: one computed while another thread added a route is remembered after that
        # add cleared the cache, and must not hide the new route.
        known = len(self.routes)
        cached = self._cache.get(type)
        if cached is not None and cached[0] == known:
            return cached[1]
        seen: set[str] = set()
        out = []
        for route in self.routes[:known]:
            if route.name not in seen and route.accepts(type):
                seen.add(route.name)
                out.append(route)
        found = tuple(out)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[type] = (known, found)
        return found
