"""pytest fixtures for applications that receive webhooks with flask_hooks.

The fixtures live in :mod:`pytest_hooks.plugin`; the classes behind them
(:class:`~pytest_hooks.delivery.SignedDelivery`,
:class:`~pytest_hooks.sender.Sender`, ...) work without pytest.
"""

from __future__ import annotations

try:
    import pytest
except ModuleNotFoundError:  # a base install: the classes need no pytest, and nothing to rewrite
    pass
else:
    pytest.register_assert_rewrite("pytest_hooks.delivery", "pytest_hooks.recorder", "pytest_hooks.sender")


def pytest_configure(config: pytest.Config) -> None:
    """Loaded by name (``-p pytest_hooks``, plugin autoloading off): load the fixtures too.

    The entry point registers :mod:`pytest_hooks.plugin` as ``hooks``; it is
    loaded here only when that did not happen, since registering the one
    module under a second name is an error in pytest.
    """
    manager = config.pluginmanager
    if not (manager.has_plugin("hooks") or manager.has_plugin("pytest_hooks.plugin")):
        manager.import_plugin("pytest_hooks.plugin")
