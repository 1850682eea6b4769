#!/usr/bin/env python3
"""Convergence by cluster size and loss, as a plot (issue 22): for each N and loss rate, the simulator's
convergence p50 and p99 in gossip rounds (medians over seeds) and the bytes each node sends a second, for
one build or two side by side. Prints the table and writes a PNG (matplotlib: `pip install matplotlib`), and the runs' reports beside it as
JSON, which `--replot` draws again without running anything. A point drawn hollow had a probe that did not
reach every node within the run (its p99 is over the probes that did).

Usage: python3 bench/plot_convergence.py BINARY [--before OLD_BINARY] [--before-label L] [--after-label L]
           [--nodes 10,30,100,300,1000] [--loss 0,0.1,0.2] [--seeds 3] [--seconds 30] [--quick]
           [--out bench/plots/convergence.png] [--replot]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plotting  # noqa: E402


def simulate(binary, nodes, loss, seed, seconds, probes):
    """One simulator run at half demand (the convergence benchmark's load), as its JSON report."""
    out = subprocess.run(
        [binary, "simulate", "--nodes", str(nodes), "--seconds", str(seconds), "--demand", "0.5", "--loss", str(loss),
         "--probes", str(probes), "--seed", str(seed), "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def summarize(reports):
    """Medians over seeds of the convergence p50 and p99 over the probes that arrived (as the simulator
    reports them), the worst p99, how many probes arrived, and the mean bytes per node per second."""
    arrived = [r for r in reports if r["convergence_rounds_p99"] is not None]
    return {
        "p50": statistics.median(r["convergence_rounds_p50"] for r in arrived) if arrived else None,
        "p99": statistics.median(r["convergence_rounds_p99"] for r in arrived) if arrived else None,
        "worst_p99": max((r["convergence_rounds_p99"] for r in arrived), default=None),
        "converged": sum(r["probes_converged"] for r in reports),
        "probes": sum(r["probes"] for r in reports),
        "bytes": statistics.mean(r["bytes_per_node_per_s"] for r in reports),
        "theory": reports[0]["convergence_rounds_theory"],
    }


def main():
    parser = argparse.ArgumentParser(description="Convergence by N and loss, as a table and a PNG.")
    parser.add_argument("binary")
    parser.add_argument("--before", help="a second build, plotted beside the first")
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--after-label", default="after")
    parser.add_argument("--nodes", default="10,30,100,300,1000")
    parser.add_argument("--loss", default="0,0.1,0.2")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="N up to 100, one seed, 20 s (checks the script works)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots", "convergence.png"))
    parser.add_argument("--replot", action="store_true", help="draw the PNG again from the JSON beside it")
    args = parser.parse_args()
    plt = plotting.pyplot("bench/plot_convergence.py")
    if plt is None:
        return 69
    nodes = [int(n) for n in args.nodes.split(",")]
    losses = [float(x) for x in args.loss.split(",")]
    seeds, seconds = args.seeds, args.seconds
    if args.quick:
        nodes, seeds, seconds = [n for n in nodes if n <= 100], 1, 20
    builds = [(args.before_label, args.before)] if args.before else []
    builds.append((args.after_label if args.before else "build", args.binary))

    saved = os.path.splitext(args.out)[0] + ".json"
    if args.replot:
        with open(saved, encoding="utf-8") as file:
            stored = json.load(file)
        nodes, losses, seeds, seconds = stored["nodes"], stored["losses"], stored["seeds"], stored["seconds"]
        builds = [tuple(build) for build in stored["builds"]]
        runs = {(label, n, loss): reports for label, n, loss, reports in stored["runs"]}
    else:
        runs = {}
        with ThreadPoolExecutor(2) as pool:
            for n in nodes:
                for loss in losses:
                    for label, binary in builds:
                        runs[(label, n, loss)] = list(pool.map(
                            lambda seed: simulate(binary, n, loss, seed, seconds, args.probes), range(1, seeds + 1)))
                        print(f"[{label} N={n} loss={loss}]", file=sys.stderr, flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(saved)), exist_ok=True)
        with open(saved, "w", encoding="utf-8") as file:
            json.dump({"nodes": nodes, "losses": losses, "seeds": seeds, "seconds": seconds,
                       "builds": [[label, os.path.basename(binary)] for label, binary in builds],
                       "runs": [[label, n, loss, [{k: v for k, v in r.items() if k != "wall_s"} for r in reports]]
                                for (label, n, loss), reports in runs.items()]}, file, indent=1)

    results = {key: summarize(reports) for key, reports in runs.items()}
    print("| build | N | loss | convergence p50 / p99 (rounds, median over seeds) | worst p99 | probes arrived "
          "| bytes/node/s | epidemic estimate |")
    print("|---|---|---|---|---|---|---|---|")
    for n in nodes:
        for loss in losses:
            for label, _ in builds:
                s = results[(label, n, loss)]
                print(f"| {label} | {n} | {loss:.0%} | {s['p50']} / {s['p99']} | {s['worst_p99']} "
                      f"| {s['converged']} of {s['probes']} | {s['bytes']:,.0f} | {s['theory']:.1f} |")

    figure, (rounds_axis, bytes_axis) = plt.subplots(1, 2, figsize=(15, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, loss in enumerate(losses):
        colour = colours[index % len(colours)]
        for label, _ in builds:
            style = "--" if args.before and label == args.before_label else "-"
            p99 = [results[(label, n, loss)]["p99"] for n in nodes]
            p50 = [results[(label, n, loss)]["p50"] for n in nodes]
            rounds_axis.plot(nodes, p99, style, marker="o", color=colour, label=f"{label}, {loss:.0%} loss, p99")
            rounds_axis.plot(nodes, p50, style, marker=".", color=colour, alpha=0.4)
            missed = [(n, value) for n, value in zip(nodes, p99)
                      if results[(label, n, loss)]["converged"] < results[(label, n, loss)]["probes"]]
            if missed:
                rounds_axis.scatter([n for n, _ in missed], [v for _, v in missed], s=110, facecolors="white",
                                    edgecolors=colour, zorder=3)
            bytes_axis.plot(nodes, [results[(label, n, loss)]["bytes"] for n in nodes], style, marker="o", color=colour,
                            label=f"{label}, {loss:.0%} loss")
    theory = [results[(builds[-1][0], n, losses[0])]["theory"] for n in nodes]
    rounds_axis.plot(nodes, theory, ":", color="black", label="epidemic estimate (fanout 3)")
    for axis in (rounds_axis, bytes_axis):
        axis.set_xscale("log")
        axis.set_xlabel("nodes")
        axis.grid(True, which="both", alpha=0.3)
    rounds_axis.set_ylabel("rounds until every node holds a record (200 ms each)")
    rounds_axis.set_title(f"Convergence, median over {seeds} seeds, {seconds} s, half demand\np99 bold, p50 faint; hollow: a probe missed a node",
                          fontsize=10)
    bytes_axis.set_ylabel("bytes sent per node per second")
    bytes_axis.set_title("Cost")
    bytes_axis.set_ylim(bottom=0)
    rounds_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    bytes_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    plotting.save(figure, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
