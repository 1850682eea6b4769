#!/usr/bin/env python3
"""Checks that BENCHMARKS.md's rights table still matches the code (issue 25): re-runs a few of its rows
with the given binary and compares them, column by column, with the published ones. The simulator is
deterministic, so any difference means the code changed the figures and the table must be regenerated
(`bench/rights_compare.py`, as BENCHMARKS.md says). Exit 1 on a difference, printing both rows.

Usage: python3 bench/check_tables.py BINARY [--rows N]   (CI: after `swift test`, with the debug binary)
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rights_compare import RUNS, row, simulate  # noqa: E402

# The rows re-run by default: a plain run, faults (crashes) and skewed demand, at N = 10 and 12 (seconds
# of wall time each, in a debug build).
CHECKED = ["N=10, seed 1", "N=10, 6 crashes", "N=12, skewed demand"]


def published_rows(path):
    """The rights rows of the table: run name → (label, the line as published)."""
    rows = {}
    with open(path, encoding="utf-8") as text:
        for line in text:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 13 and cells[1].startswith("rights ("):
                rows[cells[0]] = (cells[1], line.strip())
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--benchmarks", default=os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"))
    args = parser.parse_args()
    published = published_rows(args.benchmarks)
    flags = dict(RUNS)
    failures = 0
    for name in CHECKED:
        if name not in published:
            print(f"check_tables: BENCHMARKS.md has no rights row named {name!r}")
            failures += 1
            continue
        label, line = published[name]
        now = row(name, label, simulate(args.binary, flags[name]))
        if now == line:
            print(f"check_tables: {name}: as published")
        else:
            failures += 1
            print(f"check_tables: {name} differs from BENCHMARKS.md; regenerate the table (bench/rights_compare.py)")
            print(f"  published: {line}")
            print(f"  now:       {now}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
