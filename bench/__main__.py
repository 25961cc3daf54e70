"""``python -m bench [section ...]``: run, print the table, write ``bench/RESULTS.md``.

Sections: cpu, gunicorn, sqlite, verify, providers (default: all). Every
number is a ratio against a reference measured in the same run on the
same machine; nothing here fails a build.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

from . import cpu, sqlite_contention, verify
from .common import Row, machine, table

SECTIONS = {**cpu.SECTIONS, **sqlite_contention.SECTIONS, **verify.SECTIONS}
RESULTS = Path(__file__).with_name("RESULTS.md")


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
            "Ratios compare flask_hooks with a reference measured in the same run; "
            "above 1.00x means flask_hooks costs more. See `bench/NOTES` in the module "
            "docstrings for what each reference is.\n\n" + text + "\n"
        )
        print(f"\nwrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
