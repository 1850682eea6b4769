#!/usr/bin/env python3
"""The acquire latency distribution over loopback HTTP, as a plot (issue 22): runs bench/acquire_http.sh
(wrk, every call granted) for one build or two in turn, REPEATS times each, and plots each run's latency
by percentile, with the median run's figures in a table. Writes a PNG (matplotlib: `pip install matplotlib`).

Usage: python3 bench/plot_acquire_latency.py BINARY [--before OLD_BINARY] [--before-label L] [--after-label L]
           [--repeats 3] [--connections 16] [--seconds 10] [--out bench/plots/acquire_latency.png]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plotting  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run(binary, connections, seconds):
    """One wrk run: requests per second and the latency (ms) at each percentile wrk was asked for."""
    out = subprocess.run(["bash", os.path.join(HERE, "acquire_http.sh"), binary, str(connections), str(seconds)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "QUOTAMESH_BENCH_PERCENTILES": "1"}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = [(float(p), int(us) / 1000) for p, us in re.findall(r"^percentile ([\d.]+) (\d+)$", out, re.M)]
    if not percentiles:
        raise SystemExit("bench/acquire_http.sh printed no percentiles (is wrk built with Lua?)")
    return rps, percentiles


def main():
    parser = argparse.ArgumentParser(description="Acquire latency by percentile over loopback HTTP, as a PNG.")
    parser.add_argument("binary")
    parser.add_argument("--before")
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--after-label", default="after")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", default=os.path.join(HERE, "plots", "acquire_latency.png"))
    args = parser.parse_args()
    plt = plotting.pyplot("bench/plot_acquire_latency.py")
    if plt is None:
        return 69
    builds = [(args.before_label, args.before)] if args.before else []
    builds.append((args.after_label if args.before else "build", args.binary))
    runs = {label: [] for label, _ in builds}
    for repeat in range(args.repeats):
        for label, binary in builds:
            rps, percentiles = run(binary, args.connections, args.seconds)
            runs[label].append((rps, percentiles))
            print(f"run {repeat + 1} {label}: {rps:.0f} requests/s, p99 {dict(percentiles)[99.0]:.2f} ms",
                  file=sys.stderr, flush=True)

    print("| build | requests/s (median run) | p50 | p90 | p99 | p99.9 | max |")
    print("|---|---|---|---|---|---|---|")
    figure, axis = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, _) in enumerate(builds):
        ordered = sorted(runs[label], key=lambda r: r[0])
        rps, median_run = ordered[len(ordered) // 2]
        at = dict(median_run)
        print(f"| {label} | {rps:.0f} | {at[50.0]:.2f} ms | {at[90.0]:.2f} ms | {at[99.0]:.2f} ms | {at[99.9]:.2f} ms "
              f"| {at[100.0]:.2f} ms |")
        for run_rps, percentiles in runs[label]:
            points = [(p, ms) for p, ms in percentiles if p < 100]
            median = (run_rps, percentiles) == ordered[len(ordered) // 2]
            # x = 1 / (1 - p): the tail spread out, as HdrHistogram plots it; the median run bold.
            axis.plot([1 / (1 - p / 100) for p, _ in points], [ms for _, ms in points], marker=".",
                      color=colours[index % len(colours)], alpha=1 if median else 0.35,
                      label=f"{label}, median of {len(ordered)} runs ({run_rps:,.0f} requests/s)" if median else None)
    ticks = [0, 50, 90, 99, 99.9, 99.99]
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks([1 / (1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
    from matplotlib.ticker import FuncFormatter
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if str(value)[0] in "2357" else ""))
    axis.axhline(2, color="black", linestyle=":", label="issue 22's p99 target (2 ms)")
    axis.set_xlabel("percentile")
    axis.set_ylabel("latency (ms)")
    axis.set_title(f"POST /v1/acquire over loopback, wrk {args.connections} connections, {args.seconds} s runs")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    plotting.save(figure, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
