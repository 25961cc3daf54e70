"""pytest fixtures for applications that receive webhooks with flask_hooks.

The fixtures live in :mod:`pytest_hooks.plugin`; the classes behind them
(:class:`~pytest_hooks.delivery.SignedDelivery`,
:class:`~pytest_hooks.sender.Sender`, ...) work without pytest.
"""

import pytest

pytest.register_assert_rewrite("pytest_hooks.delivery", "pytest_hooks.recorder", "pytest_hooks.sender")
