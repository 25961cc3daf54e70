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


@pytest.mark.parametrize("autoload", [True, False])
@pytest.mark.parametrize("spec", ["hooks", "pytest_hooks"])
def test_the_plugin_loads_by_name_with_or_without_autoloading(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, spec: str, autoload: bool
) -> None:
    """``-p hooks`` (the entry point's name) and ``-p pytest_hooks`` (the package's) both
    load the fixtures once, whether pytest also loads the installed plugins or not."""
    if autoload:
        monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    else:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", spec, "--fixtures")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["signed_delivery -- *pytest_hooks/plugin.py*"])
