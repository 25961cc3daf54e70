"""The example app per test, in a fresh instance folder (the plugin's ``app``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from example_app import create_app

CONFIG = {
    "TESTING": True,
    "EXAMPLE_WEBHOOK_SECRET": "test-webhook-secret",
    "EXAMPLE_NARADA_TOKEN": "test-narada-token",
    "EXAMPLE_NARADA_SECRET": "test-narada-secret",
    "EXAMPLE_NOUKAI_SECRET": "test-noukai-secret",
    "EXAMPLE_PUBLIC_URL": "https://example.test",
    "SECRET_KEY": "test-session-key",
}


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """What pytest_hooks' fixtures (signed_delivery, webhook_sender, provider_api) drive."""
    return create_app(CONFIG, instance_path=str(tmp_path / "instance"))
