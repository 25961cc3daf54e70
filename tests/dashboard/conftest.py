"""Fixtures: a fresh seeded shop per test (memory store, frozen clock)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.shop import Shop, make_shop


@pytest.fixture
def shop_factory(tmp_path: Path) -> Callable[..., Shop]:
    def factory(**kwargs: Any) -> Shop:
        return make_shop(str(tmp_path / "instance"), **kwargs)

    return factory


@pytest.fixture
def shop(shop_factory: Callable[..., Shop]) -> Shop:
    return shop_factory()
