"""The conftest.py of the docs' examples: an ``app`` fixture, as a user writes it.

The pytester tests copy it into each run as ``conftest.py``.
"""

import pytest
from shop import create_app


@pytest.fixture
def app():
    return create_app(TESTING=True, HOOKS_STORE="memory://")
