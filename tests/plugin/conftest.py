"""Helpers for the plugin's own tests: run the docs' examples through pytester."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# Imported once in this process: pytester's inline runs drop modules first
# imported inside them, and a re-imported requests no longer matches the
# cookie classes the previous copy left behind.
import requests  # noqa: F401
import responses  # noqa: F401

EXAMPLES = Path(__file__).parent / "examples"

# The examples are a user's test modules (named test_*.py so that they are
# collected once copied into a project); they need the examples' own conftest,
# so this suite runs them only through pytester (test_examples.py).
collect_ignore = ["examples"]


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Lay out a user's project (the examples' conftest + one test module) and run it."""

    def run(module: str | None = None, source: str | None = None, *args: str) -> pytest.RunResult:
        pytester.makepyfile(shop=(EXAMPLES / "shop.py").read_text())
        pytester.makeconftest((EXAMPLES / "conftest_app.py").read_text())
        if module is not None:
            pytester.makepyfile(**{f"test_{module}": (EXAMPLES / f"test_{module}.py").read_text()})
        if source is not None:
            pytester.makepyfile(test_user=source)
        return pytester.runpytest("-p", "no:cacheprovider", *args)

    return run
