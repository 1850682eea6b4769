#!/usr/bin/env python3
"""Weighted shares in the simulator (issue 24): each configuration over seeds 1-5, equal normal-priority
demand at twice the limit (100 calls per 10 s, 60 s), each node's part of the calls served beside its
weighted max-min share (effective weights: the smaller of claimed and vouched), the utilization and the
worst window.

Usage: python3 bench/weights_table.py BINARY
"""
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CONFIGS = [
    ("3 nodes, no weights", ["--nodes", "3"]),
    ("3 nodes, weights 1, 1, 2", ["--nodes", "3", "--weights", "1,1,2"]),
    ("3 nodes claiming 1, 1, 4, vouched 1, 1, 2", ["--nodes", "3", "--weights", "1,1,4", "--vouched-weights", "1,1,2"]),
    ("10 nodes, one of weight 3", ["--nodes", "10", "--weights", "1,1,1,1,1,1,1,1,1,3"]),
]
# The weight-2 node goes idle half-way: calls accepted per 10 s window (limit 100) before and after.
IDLE = ["--nodes", "3", "--weights", "1,1,2", "--idle", "2:0.5"]
SEEDS = range(1, 6)


def run(binary, flags, seed):
    out = subprocess.run(
        [binary, "simulate", *flags, "--seconds", "60", "--demand", "2", "--mix", "0,1,0", "--probes", "0",
         "--seed", str(seed), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    binary = sys.argv[1]
    print("| configuration | weighted max-min shares | served, mean over seeds 1-5 | worst deviation | utilization (min) | worst window |")
    print("|---|---|---|---|---|---|")
    with ThreadPoolExecutor(2) as pool:
        for name, flags in CONFIGS:
            if "--weights" not in flags:
                flags = flags + ["--weights", "1"]
            reports = list(pool.map(lambda seed: run(binary, flags, seed), SEEDS))
            expected = reports[0]["weighted_shares"]
            served = [statistics.mean(r["node_shares"][i] for r in reports) for i in range(len(expected))]
            deviation = max(abs(r["node_shares"][i] - r["weighted_shares"][i]) for r in reports for i in range(len(expected)))
            shown = lambda values: ", ".join(f"{v:.3f}" for v in (values if len(values) <= 3 else [values[0], values[-1]]))
            suffix = "" if len(expected) <= 3 else " (first, last)"
            utilization = [r["utilization"] for r in reports]
            print(f"| {name} | {shown(expected)}{suffix} | {shown(served)}{suffix} | {deviation:.3f} "
                  f"| {statistics.mean(utilization):.3f} ({min(utilization):.3f}) | {max(r['max_admitted_ratio'] for r in reports):.2f} |",
                  flush=True)
        reports = list(pool.map(lambda seed: run(binary, IDLE, seed), SEEDS))
        print()
        print("Weights 1, 1, 2, the weight-2 node idle from 30 s: calls accepted per window (limit 100), by seed")
        print()
        print("| seed | windows 1-3 | windows 4-5 (after it went idle) | utilization |")
        print("|---|---|---|---|")
        for seed, report in zip(SEEDS, reports):
            accepted = [w["accepted"] for w in report["windows"]]
            print(f"| {seed} | {accepted[:3]} | {accepted[3:]} | {report['utilization']:.3f} |")


if __name__ == "__main__":
    main()
