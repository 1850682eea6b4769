#!/usr/bin/env python3
"""Tables for docs/TUNING.md: the simulator swept over gossip interval, fanout and reserves.

Each cell is the median over seeds 1..SEEDS of `quotamesh simulate --json`, so one lucky or unlucky
seed does not decide a row. Usage:

  swift build -c release --product quotamesh --scratch-path .build-release
  python3 bench/tuning_tables.py [--binary .build-release/release/quotamesh] [--seeds 3]
"""
import argparse
import json
import statistics
import subprocess
import sys

COLUMNS = [
    ("convergence_rounds_p50", "conv. p50 (rounds)"),
    ("convergence_rounds_p99", "conv. p99 (rounds)"),
    ("max_admitted_ratio", "max admitted/limit"),
    ("utilization", "utilization"),
    ("urgent_success_ratio", "urgent success"),
    ("urgent_wait_p99_ms", "urgent wait p99 (ms)"),
    ("bytes_per_node_per_s", "bytes/node/s"),
]


def simulate(binary, args, seed):
    out = subprocess.run([binary, "simulate", "--json", "--seed", str(seed)] + args,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def row(binary, label, args, seeds):
    runs = [simulate(binary, args, seed) for seed in range(1, seeds + 1)]
    cells = []
    for key, _ in COLUMNS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if not values:
            cells.append("-")
            continue
        median = statistics.median(values)
        cells.append(f"{median:.0f}" if key in ("bytes_per_node_per_s", "urgent_wait_p99_ms")
                     else f"{median:.3g}")
    print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def table(binary, title, base, variants, seeds):
    print(f"\n### {title}\n")
    print(f"`quotamesh simulate {' '.join(base)} …`, median of seeds 1–{seeds}\n")
    print("| setting | " + " | ".join(name for _, name in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for label, extra in variants:
        row(binary, label, base + extra, seeds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build-release/release/quotamesh")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    base = ["--nodes", "50", "--seconds", "60", "--demand", "2"]
    table(args.binary, "Gossip interval (50 nodes, demand 2× the limit of 100 per 10 s)", base,
          [(f"`--interval {v}`", ["--interval", v]) for v in ["100ms", "200ms", "500ms", "1s"]], args.seeds)
    table(args.binary, "Fanout, without loss and with 20% loss (50 nodes, demand 2×)", base,
          [(f"`--fanout {f}`{' `--loss 0.2`' if loss else ''}", ["--fanout", str(f)] + (["--loss", "0.2"] if loss else []))
           for loss in (False, True) for f in (2, 3, 4, 6)], args.seeds)
    heavy = ["--nodes", "20", "--seconds", "60", "--demand", "10", "--mix", "0.05,0.15,0.8"]
    table(args.binary, "Reserves urgent,normal,low (20 nodes, demand 10×, 80% of it low priority)", heavy,
          [(f"`--reserves {r}`", ["--reserves", r]) for r in ["0,0,0", "0,0.05,0.2", "0,0.1,0.5", "0,0.2,0.8"]],
          args.seeds)
    table(args.binary, "Limit size against the window (50 nodes, demand 2×, 60 s windows)",
          ["--nodes", "50", "--seconds", "120", "--demand", "2", "--window", "60s"],
          [(f"`--limit {l}`", ["--limit", str(l)]) for l in [10, 50, 100, 1000, 10000]], args.seeds)


if __name__ == "__main__":
    sys.exit(main())
