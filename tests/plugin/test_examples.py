"""Every example in docs/testing.rst passes when run the way a user runs it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

EXAMPLES = {
    "signed_delivery": 5,
    "webhook_sender": 4,
    "hook_signals": 3,
    "webhook_clock": 2,
    "provider_api": 2,
}


@pytest.mark.parametrize(("module", "count"), EXAMPLES.items())
def test_example_passes(user_project: Callable[..., pytest.RunResult], module: str, count: int) -> None:
    result = user_project(module)
    result.assert_outcomes(passed=count)


def test_the_entry_point_loads_the_plugin_out_of_process(pytester: pytest.Pytester) -> None:
    """A fresh interpreter finds the fixtures through the ``pytest11`` entry point."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*fixtures defined from pytest_hooks.plugin*"])
    for name in ("signed_delivery", "webhook_sender", "hook_signals", "webhook_clock", "provider_api"):
        result.stdout.fnmatch_lines([f"{name} -- *pytest_hooks/plugin.py*"])
