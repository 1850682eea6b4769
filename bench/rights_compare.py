#!/usr/bin/env python3
"""Enforcement by rights against enforcement by estimate, side by side (issue 18): the same simulator
runs, same seeds, with two `quotamesh` binaries, printed as one Markdown table.

Usage: python3 bench/rights_compare.py BEFORE_BINARY AFTER_BINARY [--before-label L] [--after-label L] [--after-only]
Build the 'before' binary from an older commit, e.g.
  git worktree add /tmp/before 101193d && (cd /tmp/before && swift build -c release --product quotamesh)
"""
import argparse
import json
import subprocess

RUNS = [
    ("N=10, seed 1", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "1"]),
    ("N=10, seed 2", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "2"]),
    ("N=10, seed 3", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "3"]),
    ("N=10, 20% loss, 10% dup.", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "1", "--loss", "0.2", "--duplication", "0.1"]),
    ("N=10, partition 20-35 s", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "1", "--partition", "20-35:0.5"]),
    ("N=10, 6 crashes", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "11", "--crashes", "6"]),
    ("N=12, skewed demand", ["--nodes", "12", "--seconds", "60", "--demand", "2", "--skewed", "--seed", "1"]),
    ("N=60 sharing 20 calls", ["--nodes", "60", "--seconds", "60", "--limit", "20", "--demand", "2", "--seed", "1"]),
    ("N=100, seed 1", ["--nodes", "100", "--seconds", "60", "--demand", "2", "--seed", "1"]),
    ("N=100, seed 2", ["--nodes", "100", "--seconds", "60", "--demand", "2", "--seed", "2"]),
    ("N=1000, 40 s", ["--nodes", "1000", "--seconds", "40", "--demand", "2", "--seed", "1"]),
    ("N=10, token bucket", ["--nodes", "10", "--seconds", "60", "--demand", "2", "--seed", "1", "--upstream", "bucket"]),
]


def depth(report):
    """The smallest bucket refilled at the limit's rate that admits the run's calls, ÷ the limit (newer binaries)."""
    value = report.get("bucket_depth_ratio")
    return "-" if value is None else f"{value:.2f}"


def exists(report):
    """The urgent wait p99 while the mesh had a right it could spend (newer binaries)."""
    value = report.get("urgent_wait_p99_where_rights_exist_ms")
    return "-" if value is None else f"{value:.0f}"


def simulate(binary, flags):
    out = subprocess.run([binary, "simulate", *flags, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--before-label", default="estimate")
    parser.add_argument("--after-label", default="rights")
    parser.add_argument("--after-only", action="store_true", help="print only the after binary's rows (the before rows stay as published)")
    args = parser.parse_args()
    print("| run | enforcement | worst window / limit | partitioned window / limit | utilization | urgent success "
          "| urgent wait p99 (ms) | where rights exist (ms) | Jain | max-min | upstream 429s | bucket depth | bytes/node/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, flags in RUNS:
        for label, binary in ((args.before_label, args.before), (args.after_label, args.after)):
            if args.after_only and binary is args.before:
                continue
            print(row(name, label, simulate(binary, flags)), flush=True)


def row(name, label, r):
    """One run's line of the table."""
    part = r.get("partition_max_admitted_ratio")
    return (f"| {name} | {label} | {r['max_admitted_ratio']:.2f} | {'-' if part is None else f'{part:.2f}'} "
            f"| {r['utilization']:.3f} | {r['urgent_success_ratio']:.3f} | {r['urgent_wait_p99_ms']:.0f} "
            f"| {exists(r)} "
            f"| {r['jain_index']:.3f} | {r['maxmin_index']:.3f} | {r['upstream_429s']} "
            f"| {depth(r)} | {r['bytes_per_node_per_s']:.0f} |")


if __name__ == "__main__":
    main()
