"""``make demo`` works from a fresh checkout and shows the three answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_demo_serve_says_how_to_log_in_to_the_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer who never read the source learns the development password, never a real one."""
    from example_app import create_app
    from example_app.demo import login_hint

    monkeypatch.delenv("EXAMPLE_ADMIN_PASSWORD", raising=False)
    base = "http://127.0.0.1:5000"
    hint = login_hint(create_app(instance_path=str(tmp_path / "a")), base)
    assert hint == f"log in at {base}/login with the development password dev-admin-password"
    own = create_app({"EXAMPLE_ADMIN_PASSWORD": "correct horse"}, instance_path=str(tmp_path / "b"))
    assert "correct horse" not in login_hint(own, base) and "EXAMPLE_ADMIN_PASSWORD" in login_hint(own, base)
    off = create_app({"EXAMPLE_ADMIN_PASSWORD": ""}, instance_path=str(tmp_path / "c"))
    assert login_hint(off, base).startswith("the login is off")


def test_demo_prints_received_duplicate_rejected(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("EXAMPLE_")}
    result = subprocess.run(
        [sys.executable, "-m", "example_app.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    answers = [line.split("->")[1].split()[0:2] for line in lines if "->" in line]
    assert answers == [["200", '{"status":'], ["200", '{"status":'], ["401", '{"status":']]
    assert '200 {"status": "received"}' in result.stdout
    assert '200 {"status": "duplicate"}' in result.stdout
    assert '401 {"status": "rejected"' in result.stdout
    assert "OK: received, duplicate, rejected" in result.stdout
    # The dashboard's URL only where it stays up (make demo-serve): here it is gone at once.
    assert "/hooks/" not in result.stdout and "make demo-serve keeps the server up" in result.stdout
    assert not list(tmp_path.iterdir()), "the demo leaves nothing behind in the working directory"
