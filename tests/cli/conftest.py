"""A real HTTP server on a free loopback port for ``flask hooks send``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Start ``app`` on 127.0.0.1 in a thread; every server is shut down after the test."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)
