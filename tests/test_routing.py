from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
from flask import Flask

from flask_hooks import ConfigError, Event, Hooks
from flask_hooks.core.routing import Router, check_pattern, handler_name, matches
from tests.conftest import generic_post


@pytest.mark.parametrize(
    ("pattern", "type", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", True),
        ("a.b", "a.bc", False),
        ("a.b", "a", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", True),
        ("a.*", "a", False),
        ("a.*", "ab.c", False),
        ("*", "anything.at.all", True),
        ("resource.created", "resource.updated", False),
    ],
)
def test_matches(pattern: str, type: str, expected: bool) -> None:
    assert matches(pattern, type) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", "*.a", "a.b*", " a", "a.", ".a"])
def test_bad_patterns_fail_at_registration(pattern: str) -> None:
    with pytest.raises(ConfigError):
        check_pattern(pattern)


@pytest.mark.parametrize("pattern", ["orders/*", "orders/*/x"])
def test_a_slashed_topic_with_a_wildcard_says_patterns_part_at_dots(pattern: str) -> None:
    # "'*' may only be the last part" for "orders/*", whose '*' is last.
    with pytest.raises(ConfigError, match=r"part types at dots only.*'orders/create'"):
        check_pattern(pattern)


def test_match_keeps_registration_order_and_runs_each_handler_once() -> None:
    router = Router()

    def first(event: Event) -> None: ...
    def second(event: Event) -> None: ...
    def catch_all(event: Event) -> None: ...

    router.add(second, ("a.b",))
    router.add(first, ("a.*",))
    router.add(catch_all, ("*",))
    router.add(second, ("a",))  # same function again: still runs once
    assert [r.func for r in router.match("a.b.c")] == [second, first, catch_all]
    assert [r.func for r in router.match("z")] == [catch_all]


def test_decorator_returns_the_function_unchanged() -> None:
    hooks = Hooks()

    def handler(event: Event) -> str:
        return "x"

    assert hooks.on("a", "b")(handler) is handler
    assert hooks.router.routes[0].patterns == ("a", "b")


def test_on_without_patterns_is_an_error() -> None:
    with pytest.raises(ConfigError):
        Hooks().on()(lambda e: None)


def test_handlers_sharing_a_default_name_all_run_with_stable_names(
    make_app: Callable[..., Flask],
) -> None:
    hooks = Hooks(store="memory://")
    seen: list[int] = []
    for n in range(3):
        hooks.on("thing.done")(lambda event, n=n: seen.append(n))
    names = [route.name for route in hooks.router.routes]
    assert names == [names[0], names[0] + "#2", names[0] + "#3"]
    assert names[0].endswith("<lambda>")
    app = make_app(hooks)
    assert generic_post(app.test_client(), {"id": "evt_1", "type": "thing.done"}).status_code == 200
    assert seen == [0, 1, 2]


def test_partials_and_callable_objects_get_default_names_without_an_address() -> None:
    """Their repr holds a memory address, which another worker or the next deploy does not
    share: a handler recorded as done under it would run again on the sender's retry."""

    def notify(event: Event, channel: str) -> None: ...

    class Notifier:
        def __call__(self, event: Event) -> None: ...

    hooks = Hooks()
    hooks.on("a")(functools.partial(notify, channel="ops"))
    hooks.on("a")(functools.partial(notify, channel="billing"))
    hooks.on("a")(Notifier())
    scope = f"{__name__}.test_partials_and_callable_objects_get_default_names_without_an_address.<locals>"
    names = [r.name for r in hooks.router.routes]
    assert names == [f"{scope}.notify", f"{scope}.notify#2", f"{scope}.Notifier"]


def test_explicit_names_identify_handlers(make_app: Callable[..., Flask]) -> None:
    hooks = Hooks(store="memory://")

    def first(event: Event) -> None: ...

    def second(event: Event) -> None: ...

    hooks.on("a", name="billing.book")(first)
    with pytest.raises(ConfigError, match=r"both named .billing\.book."):
        hooks.on("b", name="billing.book")(second)
    hooks.on("c", name="billing.book")(first)  # the same handler for more types
    assert [r.name for r in hooks.router.routes] == ["billing.book", "billing.book"]
    assert len(hooks.router.match("a")) == len(hooks.router.match("c")) == 1


def test_async_and_generator_handlers_are_refused_at_registration() -> None:
    """Called, they run nothing: the delivery was answered 200 and recorded as done,
    and a generator's exception (raised while its reply was read) counted as success."""
    hooks = Hooks()

    async def coroutine(event: Event) -> None: ...

    def generator(event: Event) -> object:
        yield b"x"

    async def async_generator(event: Event) -> object:
        yield b"x"

    for func in (coroutine, generator, async_generator):
        with pytest.raises(ConfigError, match=r"async|generator"):
            hooks.on("a")(func)
    assert hooks.router.routes == []


def test_callable_objects_whose_call_is_async_or_a_generator_are_refused() -> None:
    """As their functions are: ``async def __call__`` returned a coroutine that never ran."""
    hooks = Hooks()

    class Coroutine:
        async def __call__(self, event: Event) -> None: ...

    class Generator:
        def __call__(self, event: Event) -> object:
            yield b"x"

    for func in (Coroutine(), Generator()):
        with pytest.raises(ConfigError, match=r"async|generator"):
            hooks.on("a")(func)
    assert hooks.router.routes == []


def test_one_function_under_two_names_is_refused() -> None:
    """It ran twice for an event both registrations matched (``"*"`` and ``"order.*"``)."""
    router = Router()

    def book(event: Event) -> None: ...

    router.add(book, ("*",))
    with pytest.raises(ConfigError, match="already registered as"):
        router.add(book, ("order.*",), name="billing.book")
    router.add(book, ("order.paid",))  # again under the name it has: fine
    assert [r.name for r in router.match("order.paid")] == [handler_name(book)]

    named = Router()
    named.add(book, ("a",), name="one")
    named.add(book, ("a.b",), name="one")
    with pytest.raises(ConfigError, match="already registered as 'one'"):
        named.add(book, ("a.b",), name="two")
    assert [r.name for r in named.match("a.b")] == ["one"]


def test_an_atomic_handler_registered_after_init_app_on_a_store_that_is_not_sql_is_refused(
    make_app: Callable[..., Flask],
) -> None:
    """Not refused, it made every delivery of its type a 500 until the sender gave up."""
    hooks = Hooks(store="memory://")
    make_app(hooks)
    with pytest.raises(ConfigError, match=r"atomic=True.*SqlStore"):
        hooks.on("order.paid", atomic=True)(lambda event: None)
    assert hooks.router.routes == []
    hooks.on("order.paid")(lambda event: None)  # a plain one is fine



def test_a_route_added_while_a_type_is_matched_is_not_forgotten() -> None:
    """A match computed just before another thread's ``add`` was remembered after that add
    had cleared the cache: the new handler never ran for that type (its deliveries were
    completed without it) until some other route was added."""

    def old(event: Event) -> None: ...
    def new(event: Event) -> None: ...

    class Racing(Router):
        @property  # type: ignore[override]
        def cache_size(self) -> int:  # read between computing a match and remembering it
            if len(self.routes) == 1:
                self.add(new, ("order.paid",))  # what another thread does at that moment
            return 1024

    router = Racing()
    router.add(old, ("order.*",))
    assert [r.func for r in router.match("order.paid")] == [old]  # begun before the add
    assert [r.func for r in router.match("order.paid")] == [old, new]
