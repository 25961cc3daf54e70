"""``celery -A tests.defer.celery_worker:celery_app worker``: the app built from ``DEFER_*``."""

from __future__ import annotations

from .defer_app import worker_app

flask_app = worker_app()
celery_app = flask_app.extensions["celery"]
