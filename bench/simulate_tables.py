#!/usr/bin/env python3
"""Runs `quotamesh simulate` over a grid and prints the tables recorded in BENCHMARKS.md.

Usage: python3 bench/simulate_tables.py [--binary PATH] [--quick] [--scale [--baseline PATH] [--repeats K]]
                                       [--enforcement-scale [--baseline PATH]] [--ten-thousand] [--fairness]
  --scale: only the large-cluster tables (N = 1000, 60 virtual s; gossip parameters side by side); with
    --baseline, the N = 1000 runs of a second binary too, alternating, with wall time and peak memory
    as medians over --repeats runs and their ratios
  --ten-thousand: only convergence at N = 10,000 (30 virtual s, 0% and 20% loss; about 10 minutes and
    12 GB)
  --enforcement-scale: only overshoot and utilization as N grows past the limit (N = 30 to 1000);
    with --baseline, the same rows from a second binary (an older commit) side by side
  --fairness: only fairness under equal and unequal demand (Jain's index over calls, and the max-min
    index: Jain's index over each node's calls divided by its max-min fair share), seeds 1 to 8
Build first: swift build -c release --product quotamesh
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys


def run(binary, **flags):
    args = [binary, "simulate", "--json"]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_measured(binary, **flags):
    """Like run, and also returns the run's peak resident memory in MB (from its own rusage)."""
    args = [binary, "simulate", "--json"]
    for key, value in flags.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, args)
    return json.loads(out), usage.ru_maxrss / 1024


def fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(fmt(cell) for cell in row) + " |")
    sys.stdout.flush()


def fairness_table(binary):
    """Jain's index over per-node calls (equal demand) beside the max-min index (unequal demand)."""
    scenarios = [
        ("equal", dict(nodes=10, seconds=60, demand=2)),
        ("skewed 1/(i+1)", dict(nodes=12, seconds=60, demand=2, skewed=True)),
        ("skewed, shifting at half time", dict(nodes=12, seconds=60, demand=2, skewed=True, shift_at=0.5)),
        ("skewed, demand 1x", dict(nodes=30, seconds=60, demand=1, skewed=True)),
        ("skewed, 20% loss", dict(nodes=12, seconds=60, demand=2, skewed=True, loss=0.2)),
        ("skewed, N = 100", dict(nodes=100, seconds=30, demand=2, skewed=True)),
    ]
    rows = []
    for label, flags in scenarios:
        results = [run(binary, seed=seed, **flags) for seed in range(1, 9)]
        rows.append([label, flags["nodes"], f"{flags['demand']}x",
                     statistics.median(r["jain_index"] for r in results),
                     statistics.median(r["maxmin_index"] for r in results),
                     min(r["maxmin_index"] for r in results),
                     min(r["maxmin_worst_ratio"] for r in results),
                     statistics.median(r["utilization"] for r in results),
                     max(r["max_admitted_ratio"] for r in results)])
    table("Fairness under equal and unequal demand (seeds 1-8; medians, min and max over seeds)",
          ["demand shape", "N", "demand", "Jain median", "max-min index median", "max-min index min",
           "worst node's calls / its max-min share (min)", "utilization median", "max admitted/limit"], rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/quotamesh")
    parser.add_argument("--quick", action="store_true", help="fewer seeds and nodes")
    parser.add_argument("--max-nodes", type=int, default=1000)
    parser.add_argument("--scale", action="store_true", help="only the large-cluster tables")
    parser.add_argument("--enforcement-scale", action="store_true", help="only enforcement as N grows")
    parser.add_argument("--baseline", help="a second binary for --scale or --enforcement-scale, side by side")
    parser.add_argument("--repeats", type=int, default=2, help="runs per binary and row for --scale")
    parser.add_argument("--ten-thousand", action="store_true", help="only convergence at N = 10,000")
    parser.add_argument("--fairness", action="store_true", help="only fairness under equal and unequal demand")
    options = parser.parse_args()
    b = options.binary
    if options.fairness:
        fairness_table(b)
        return
    if options.enforcement_scale:
        enforcement_scale_table(b, options.baseline, options.quick)
        return
    if options.ten_thousand:
        ten_thousand_table(b)
        return
    if options.scale:
        scale_tables(b, options.baseline, options.repeats)
        return
    seeds = [1, 2] if options.quick else [1, 2, 3]
    sizes = [n for n in ([10, 100, 1000] if not options.quick else [10, 100]) if n <= options.max_nodes]

    rows = []
    for n in sizes:
        for loss in (0.0, 0.2):
            p50s, p99s, walls, bytes_, verifs = [], [], [], [], []
            for seed in seeds:
                seconds = 30 if n >= 1000 else 40
                r = run(b, nodes=n, seconds=seconds, loss=loss, seed=seed, demand=0.5, probes=12)
                if r["convergence_rounds_p50"] is not None:
                    p50s.append(r["convergence_rounds_p50"])
                    p99s.append(r["convergence_rounds_p99"])
                walls.append(r["wall_s"] / seconds * 60)
                bytes_.append(r["bytes_per_node_per_s"])
                verifs.append(r["verifications_per_node_per_s"])
                theory = r["convergence_rounds_theory"]
            rows.append([n, f"{int(loss*100)}%", statistics.median(p50s) if p50s else None,
                         max(p99s) if p99s else None, theory, statistics.median(bytes_),
                         statistics.median(verifs), statistics.median(walls)])
    table("Convergence and cost (demand 0.5x, medians over seeds; p99 is the worst seed)",
          ["N", "loss", "rounds p50", "rounds p99", "theory log_k N + ln N/k", "bytes/node/s",
           "verifications/node/s", "wall s per 60 virtual s"], rows)

    rows = []
    for demand in (1, 2, 10):
        for loss in (0.0, 0.2):
            results = [run(b, nodes=10, seconds=60, loss=loss, seed=s, demand=demand) for s in seeds]
            rows.append([f"{demand}x", f"{int(loss*100)}%",
                         max(r["max_admitted_ratio"] for r in results),
                         statistics.median(r["utilization"] for r in results),
                         statistics.median(r["jain_index"] for r in results),
                         min(r["urgent_success_ratio"] for r in results),
                         statistics.median(r["urgent_wait_p99_ms"] for r in results),
                         sum(r["upstream_429s"] for r in results)])
    for label, extra in (("skewed", {"skewed": True}), ("shifting", {"skewed": True, "shift_at": 0.5})):
        results = [run(b, nodes=10, seconds=60, seed=s, demand=2, **extra) for s in seeds]
        rows.append([f"2x {label}", "0%", max(r["max_admitted_ratio"] for r in results),
                     statistics.median(r["utilization"] for r in results),
                     statistics.median(r["jain_index"] for r in results),
                     min(r["urgent_success_ratio"] for r in results),
                     statistics.median(r["urgent_wait_p99_ms"] for r in results),
                     sum(r["upstream_429s"] for r in results)])
    table("Overshoot, utilization, fairness, priority (N=10, limit 100 per 10 s; worst seed for max, medians otherwise)",
          ["demand", "loss", "max admitted/limit", "utilization", "Jain", "urgent success (min)",
           "urgent wait p99 ms", "upstream 429s (all seeds)"], rows)

    rows = []
    results = [run(b, nodes=10, seconds=60, seed=s, demand=10, mix="0.02,0.08,0.9") for s in seeds]
    rows.append(["low at 10x the limit", min(r["urgent_success_ratio"] for r in results),
                 statistics.median(r["urgent_wait_p99_ms"] for r in results),
                 max(r["max_admitted_ratio"] for r in results)])
    table("Priority under a flood of low-priority work", ["scenario", "urgent success (min)", "urgent wait p99 ms",
                                                         "max admitted/limit"], rows)

    rows = []
    for label, extra in (("partition 15-32 s, halves", {"partition": "15-32:0.5"}),
                         ("6 crash-restarts", {"crashes": 6}),
                         ("30% duplicates, 1-150 ms latency", {"duplication": 0.3, "latency": "1-150"}),
                         ("clock skew +-400 ms", {"clock_skew": "400ms"})):
        results = [run(b, nodes=10, seconds=60, seed=s, demand=2, **extra) for s in seeds]
        rows.append([label, max(r["max_admitted_ratio"] for r in results),
                     max((r["partition_max_admitted_ratio"] or 0) for r in results) if "partition" in extra else None,
                     statistics.median(r["utilization"] for r in results),
                     min(r["probes_converged"] / max(1, r["probes"]) for r in results)])
    table("Faults (N=10, demand 2x)", ["fault", "max admitted/limit outside", "max admitted/limit in partition windows",
                                       "utilization", "probes converged (min fraction)"], rows)


def enforcement_scale_table(b, baseline, quick=False):
    """Overshoot and utilization as the nodes outnumber the limit (demand 2x, 60 virtual s, seed 1)."""
    cases = [(30, 100), (100, 100), (300, 100), (1000, 100), (100, 1000), (300, 3000)]
    if quick:
        cases = [(30, 100), (100, 100), (100, 1000)]
    rows = []
    for n, limit in cases:
        line = [n, limit, f"{limit / n:.2f}"]
        for binary in ([baseline] if baseline else []) + [b]:
            print(f"  N={n} limit={limit} {binary}", file=sys.stderr, flush=True)
            r = run(binary, nodes=n, seconds=60, seed=1, demand=2, limit=limit)
            line += [r["max_admitted_ratio"], r["utilization"], r["upstream_429s"], r["wall_s"]]
        if baseline:
            line = line[:3] + [f"{line[3]:.2f} → {line[7]:.2f}", f"{line[4]:.3f} → {line[8]:.3f}",
                               f"{line[5]} → {line[9]}", f"{line[6]:.0f} → {line[10]:.0f}"]
        rows.append(line)
    header = ["N", "limit per 10 s", "calls per node per window", "max admitted/limit", "utilization",
              "upstream 429s", "wall s"]
    table("Enforcement as N grows (demand 2x, 60 virtual s, seed 1" + ("; before → after)" if baseline else ")"),
          header, rows)


def scale_tables(b, baseline=None, repeats=2):
    rows = []
    speed = []
    for demand in (0.01, 2):
        walls, memories, old_walls, old_memories = [], [], [], []
        same = True
        for _ in range(max(1, repeats)):
            # Alternating, so that a noisy stretch of the machine falls on both binaries alike.
            r, memory = run_measured(b, nodes=1000, seconds=60, seed=1, demand=demand)
            walls.append(r["wall_s"])
            memories.append(memory)
            if baseline:
                old, old_memory = run_measured(baseline, nodes=1000, seconds=60, seed=1, demand=demand)
                old_walls.append(old["wall_s"])
                old_memories.append(old_memory)
                same = same and all(old[k] == r[k] for k in r if k != "wall_s")
        rows.append([1000, 60, f"{demand}x", statistics.median(walls), round(statistics.median(memories)),
                     r["convergence_rounds_p50"], r["convergence_rounds_p99"],
                     r["convergence_rounds_theory"], f'{r["probes_converged"]}/{r["probes"]}',
                     r["bytes_per_node_per_s"], r["verifications_per_node_per_s"]])
        if baseline:
            speed.append([f"{demand}x", statistics.median(old_walls), statistics.median(walls),
                          statistics.median(walls) / statistics.median(old_walls),
                          round(statistics.median(old_memories)), round(statistics.median(memories)),
                          statistics.median(memories) / statistics.median(old_memories),
                          "yes" if same else "no"])
    for loss in (0, 0.2):
        # The convergence table's setting (demand 0.5x), at N = 1000.
        r, memory = run_measured(b, nodes=1000, seconds=60, seed=1, demand=0.5, loss=loss)
        rows.append([1000, 60, f"0.5x, {round(loss * 100)}% loss", r["wall_s"], round(memory),
                     r["convergence_rounds_p50"], r["convergence_rounds_p99"],
                     r["convergence_rounds_theory"], f'{r["probes_converged"]}/{r["probes"]}',
                     r["bytes_per_node_per_s"], r["verifications_per_node_per_s"]])
    table(f"1,000 nodes, 60 virtual seconds, defaults (seed 1; wall and memory of the 0.01x and 2x rows: medians of {max(1, repeats)} runs)",
          ["N", "virtual s", "demand", "wall s", "peak MB", "rounds p50", "rounds p99", "theory",
           "probes converged", "bytes/node/s", "verifications/node/s"], rows)
    if baseline:
        table(f"Baseline and this binary side by side, alternating (N = 1000, 60 virtual s, seed 1; medians of {max(1, repeats)} runs)",
              ["demand", "wall s before", "wall s after", "after / before", "peak MB before", "peak MB after",
               "after / before", "same results (all but wall_s)"], speed)
    rows = []
    # The configured digest period is divided by about log10(N + 1) = 3 at N = 1000: 3 -> 1, 6 -> 2, 15 -> 5.
    for retransmit in (1, 2, 4):
        for configured, effective in ((3, 1), (6, 2), (15, 5)):
            r = run(b, nodes=1000, seconds=20, seed=1, demand=2, retransmit=retransmit, digest_every=configured)
            rows.append([retransmit, effective, r["convergence_rounds_p50"], r["convergence_rounds_p99"],
                         f'{r["probes_converged"]}/{r["probes"]}', r["bytes_per_node_per_s"], r["wall_s"]])
    table("Gossip parameters side by side (N = 1000, 20 virtual s, demand 2x, seed 1)",
          ["retransmit multiplier", "digest every (rounds)", "rounds p50", "rounds p99", "probes converged",
           "bytes/node/s", "wall s"], rows)


def ten_thousand_table(b):
    rows = []
    for loss in (0, 0.2):
        r, memory = run_measured(b, nodes=10000, seconds=30, seed=1, demand=1, loss=loss)
        rows.append([10000, 30, f"{round(loss * 100)}%", r["wall_s"], round(memory / 1024, 1),
                     r["convergence_rounds_p50"], r["convergence_rounds_p99"], r["convergence_rounds_theory"],
                     f'{r["probes_converged"]}/{r["probes"]}', r["bytes_per_node_per_s"]])
    table("10,000 nodes, 30 virtual seconds, demand 1x (seed 1)",
          ["N", "virtual s", "loss", "wall s", "peak GB", "rounds p50", "rounds p99", "theory",
           "probes converged", "bytes/node/s"], rows)


if __name__ == "__main__":
    main()
