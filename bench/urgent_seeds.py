#!/usr/bin/env python3
"""Urgent work where rights exist, two builds side by side over many seeds (issue 18): for each
configuration, the mean (min) utilization, the median, 75th percentile and worst over seeds of the urgent
wait p99 to the node's grant while the mesh had a right it could spend
(`urgent_acquire_wait_p99_where_rights_exist_ms`), and in how many seeds that p99 was at most 50 ms.

Usage: python3 bench/urgent_seeds.py BEFORE_BINARY AFTER_BINARY [--before-label L] [--after-label L] [--only TEXT]
"""
import argparse
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rights_compare import simulate  # noqa: E402

CONFIGS = [
    ("N = 10, seeds 1-24", ["--nodes", "10", "--demand", "2"], range(1, 25)),
    ("N = 10 at 1× demand, seeds 1-12", ["--nodes", "10", "--demand", "1"], range(1, 13)),
    ("N = 10 at 5× demand, seeds 1-12", ["--nodes", "10", "--demand", "5"], range(1, 13)),
    ("N = 12 skewed, seeds 1-18", ["--nodes", "12", "--demand", "2", "--skewed"], range(1, 19)),
    ("N = 20, seeds 1-12", ["--nodes", "20", "--demand", "2"], range(1, 13)),
    ("N = 100, seeds 1-8", ["--nodes", "100", "--demand", "2"], range(1, 9)),
    ("N = 10, token bucket, seeds 1-6", ["--nodes", "10", "--demand", "2", "--upstream", "bucket"], range(1, 7)),
    ("N = 10, token bucket at 5× demand, seeds 1-6", ["--nodes", "10", "--demand", "5", "--upstream", "bucket"], range(1, 7)),
    ("N = 20, token bucket, seeds 1-6", ["--nodes", "20", "--demand", "2", "--upstream", "bucket"], range(1, 7)),
]


def run(job):
    """One 60 s run of a configuration and seed."""
    binary, flags, seed = job
    return simulate(binary, [*flags, "--seconds", "60", "--seed", str(seed)])


def main():
    parser = argparse.ArgumentParser(description="Urgent work where rights exist, two builds over many seeds.")
    for name in ("before", "after"):
        parser.add_argument(name)
        parser.add_argument(f"--{name}-label", default=name)
    parser.add_argument("--only", help="run only the configurations whose name contains this text")
    args = parser.parse_args()
    print("| runs | build | utilization mean (min) | urgent wait p99 to the grant, median / p75 / worst over seeds "
          "| seeds ≤ 50 ms | worst window | 429s |")
    print("|---|---|---|---|---|---|---|")
    with ThreadPoolExecutor(2) as pool:
        for name, flags, seeds in CONFIGS:
            if args.only and args.only not in name:
                continue
            for label, binary in ((args.before_label, args.before), (args.after_label, args.after)):
                reports = list(pool.map(run, [(binary, flags, seed) for seed in seeds]))
                utilization = [r["utilization"] for r in reports]
                waits = sorted(r.get("urgent_acquire_wait_p99_where_rights_exist_ms") or 0 for r in reports)
                within = sum(1 for wait in waits if wait <= 50)
                print(f"| {name} | {label} | {statistics.mean(utilization):.3f} ({min(utilization):.3f}) "
                      f"| {statistics.median(waits):.0f} / {waits[int(len(waits) * 0.75)]:.0f} / {max(waits):.0f} ms "
                      f"| {within} of {len(waits)} | {max(r['max_admitted_ratio'] for r in reports):.2f} "
                      f"| {sum(r['upstream_429s'] for r in reports)} |", flush=True)


if __name__ == "__main__":
    main()
