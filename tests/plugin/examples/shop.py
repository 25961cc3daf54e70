"""The application the docs' examples test: a shop that fulfils paid orders.

The pytester tests copy it next to the examples, as a user's app module.
"""

from __future__ import annotations

from flask import Flask, current_app

from flask_hooks import Event, Hooks

hooks = Hooks()


@hooks.on("order.paid")
def fulfil(event: Event) -> None:
    failures = current_app.config["FAILURES"]
    if failures.get(event.id, 0) > 0:
        failures[event.id] -= 1
        raise RuntimeError("warehouse unavailable")
    current_app.config["FULFILLED"].append(event.id)


def create_app(**config: object) -> Flask:
    app = Flask("shop")
    app.config.update(
        HOOKS_SECRET="s3cret-signing-key",
        FULFILLED=[],  # what the handler did, for the tests to check
        FAILURES={},  # event id -> how many times the handler should fail first
    )
    app.config.update(config)
    hooks.init_app(app)
    return app
