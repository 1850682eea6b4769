#!/usr/bin/env python3
"""Rights over more seeds (issue 18): mean and minimum utilization, and the median and worst over seeds
of the urgent wait p99 while the mesh had a right it could spend (`urgent_wait_p99_where_rights_exist_ms`,
to the upstream's answer, and `urgent_acquire_wait_p99_where_rights_exist_ms`, to the node's grant), for the
configurations of BENCHMARKS.md's "Over more seeds" table.

Usage: python3 bench/rights_seeds.py BINARY [--only TEXT]   (--only: the configurations whose name has TEXT)
"""
import argparse
import json
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor

CONFIGS = [
    ("N = 10, seeds 1-8", ["--nodes", "10", "--demand", "2"], range(1, 9)),
    ("N = 12 skewed, seeds 1-6", ["--nodes", "12", "--demand", "2", "--skewed"], range(1, 7)),
    ("N = 60 sharing 20, seeds 1-3", ["--nodes", "60", "--limit", "20", "--demand", "2"], range(1, 4)),
    ("N = 100, seeds 1-8", ["--nodes", "100", "--demand", "2"], range(1, 9)),
    ("N = 1000, 40 s, seeds 1-3", ["--nodes", "1000", "--demand", "2", "--seconds", "40"], range(1, 4)),
]


def summary(reports, field):
    """The median and worst over seeds of one of the reports' figures, in ms."""
    values = [r.get(field) for r in reports]
    values = [v for v in values if v is not None]
    return f"{statistics.median(values):.0f} ms ({max(values):.0f} ms)" if values else "(no urgent task while rights existed)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    binary = args.binary

    def run(args):
        flags, seed = args
        seconds = [] if "--seconds" in flags else ["--seconds", "60"]
        out = subprocess.run([binary, "simulate", *flags, *seconds, "--seed", str(seed), "--json"],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    print("| runs | utilization mean (min) | urgent wait p99 where rights exist, median (worst) over seeds "
          "| to the grant only | worst window | 429s |")
    print("|---|---|---|---|---|---|")
    with ThreadPoolExecutor(2) as pool:
        for name, flags, seeds in (c for c in CONFIGS if args.only in c[0]):
            reports = list(pool.map(run, [(flags, seed) for seed in seeds]))
            utilization = [r["utilization"] for r in reports]
            wait = summary(reports, "urgent_wait_p99_where_rights_exist_ms")
            grant = summary(reports, "urgent_acquire_wait_p99_where_rights_exist_ms")
            print(f"| {name} | {statistics.mean(utilization):.3f} ({min(utilization):.3f}) | {wait} | {grant} "
                  f"| {max(r['max_admitted_ratio'] for r in reports):.2f} | {sum(r['upstream_429s'] for r in reports)} |",
                  flush=True)


if __name__ == "__main__":
    main()
