"""``make demo`` works from a fresh checkout and shows the three answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
