"""``flask hooks ...``: inspect receivers, forge deliveries, read the log."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

cli = AppGroup("hooks", help="Inspect and exercise webhook receivers.")


@cli.command("routes")
def routes_command() -> None:
    """List receivers, their URLs and providers, and each handler's patterns."""
    from .extension import get_state

    state = get_state(current_app._get_current_object())  # type: ignore[attr-defined]
    for receiver in state.receivers.values():
        settings = receiver.settings
        click.echo(f"{receiver.name}  POST {settings.url}  provider={receiver.provider.name}  store={settings.store}")
        for route in receiver.hooks.router.routes:
            click.echo(f"    {route.name}  <-  {', '.join(route.patterns)}")
