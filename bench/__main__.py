"""``python -m bench [section ...]``: run, print the table, write ``bench/RESULTS.md``.

Sections: cpu, instructions, gunicorn, sqlite, verify, providers, defer, dashboard, inbox,
inbox-gunicorn, inbox-purge, postgres (default: all). Every
number is a ratio against a reference measured in the same run on the
same machine; nothing here fails a build.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from . import cpu, dashboard, inbox, inbox_purge, instructions, postgres, sqlite_contention, verify
from .common import Fact, Row, machine, table


def defer() -> list[Row]:
    """Acknowledgement latency with RQ and Celery (``bench/defer_ack.py``)."""
    from . import defer_ack

    result = defer_ack.measure()
    return [
        Fact(
            "defer",
            f"ack latency (median) via {name}, handler doing {defer_ack.WORK_SECONDS:.0f} s of work",
            result[name] * 1000,
            "ms",
            baseline=result["sync"] * 1000,
            note="reference column: the same handler run synchronously" if name == "celery" else "",
        )
        for name in ("rq", "celery")
    ]


SECTIONS = {
    **cpu.SECTIONS,
    **instructions.SECTIONS,
    **dashboard.SECTIONS,
    **inbox.SECTIONS,
    **inbox_purge.SECTIONS,
    **postgres.SECTIONS,
    **sqlite_contention.SECTIONS,
    **verify.SECTIONS,
    "defer": defer,
}
RESULTS = Path(__file__).with_name("RESULTS.md")
#: Hand-written analysis (what the references are, where the time goes), appended to RESULTS.md.
NOTES = Path(__file__).with_name("NOTES.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS], default=[])
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    chosen = args.sections or list(SECTIONS)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(SECTIONS[name]())
    elapsed = time.perf_counter() - started
    text = table(rows)
    print(text)
    if not args.no_write:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        RESULTS.write_text(
            "# Benchmark results\n\n"
            f"`python -m bench {' '.join(chosen)}` on {stamp}, {elapsed:.0f} s.\n\n"
            f"Machine: {machine()}.\n\n"
            "Ratios compare flask_hooks with a reference measured in the same run; above 1.00x "
            "means flask_hooks costs more (for req/s: the reference's rate over ours).\n\n"
            + text
            + "\n\n"
            + NOTES.read_text()
        )
        print(f"\nwrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
