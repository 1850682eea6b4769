#!/usr/bin/env python3
"""Acquire over HTTP, two builds side by side: runs bench/acquire_http.sh for each binary in turn,
REPEATS times, and prints the median requests/s and p99 of each, and their ratio.

Usage: python3 bench/acquire_http_compare.py OLD_BINARY NEW_BINARY [--repeats 3] [--connections 16] [--seconds 10]
"""
import argparse
import re
import statistics
import subprocess
import sys


def run(binary, connections, seconds):
    out = subprocess.run(["bash", "bench/acquire_http.sh", binary, str(connections), str(seconds)],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    results = {"old": [], "new": []}
    for repeat in range(args.repeats):
        for name in ("old", "new"):
            rps, p99 = run(getattr(args, name), args.connections, args.seconds)
            results[name].append((rps, p99))
            print(f"run {repeat + 1} {name}: {rps:.0f} requests/s, p99 {p99:.1f} ms", file=sys.stderr, flush=True)
    print("| build | requests/s (median) | p99 ms (median) |")
    print("|---|---|---|")
    medians = {}
    for name in ("old", "new"):
        rps = statistics.median(r for r, _ in results[name])
        p99 = statistics.median(p for _, p in results[name])
        medians[name] = (rps, p99)
        print(f"| {name} | {rps:.0f} | {p99:.1f} |")
    print(f"| new ÷ old | {medians['new'][0] / medians['old'][0]:.2f}× | {medians['new'][1] / medians['old'][1]:.2f}× |")


if __name__ == "__main__":
    sys.exit(main())
