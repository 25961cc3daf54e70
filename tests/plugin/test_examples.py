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
