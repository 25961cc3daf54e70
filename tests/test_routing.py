from __future__ import annotations

import pytest

from flask_hooks import ConfigError, Event, Hooks
from flask_hooks.core.routing import Router, check_pattern, matches


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
