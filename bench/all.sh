#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one command, each printing its tables (issue 5).
#
#   bash bench/all.sh           the full suite: about 80 minutes on 2 cores
#   bash bench/all.sh --quick   shorter runs of each (about 12 minutes), to check the suite works
#
# Builds the release binary into .build-release, then runs: the scenario (naive, central and quotamesh
# side by side) against a fixed-window and a token-bucket upstream, the simulator tables, the
# ordo-one/benchmark micro-benchmarks, and acquire over the loopback HTTP API (when wrk is installed); with
# matplotlib, the plots in bench/plots/ (the quick mode draws them into a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case "${1:-}" in
    --quick) quick=1 ;;
    "") ;;
    *) echo "usage: bash bench/all.sh [--quick]" >&2; exit 64 ;;
esac
for tool in swift python3; do
    command -v "$tool" >/dev/null || { echo "bench/all.sh: $tool is needed" >&2; exit 69; }
done

section() { printf '\n## %s\n\n' "$1"; echo "[$(date +%H:%M:%S)] $1 ..." >&2; }

section "Release build"
swift build -c release --product quotamesh --scratch-path .build-release 2>&1 | tail -1
binary=.build-release/release/quotamesh

seconds=60; sim_flags=(); micro_flags=()
if [[ $quick == 1 ]]; then
    seconds=20; sim_flags=(--quick); micro_flags=(--filter "acquire.*|record.*")
fi

section "Scenario: fixed-window upstream (${seconds} s per mode)"
python3 bench/scenario.py --binary "$binary" --seconds "$seconds" --upstream fixed 2>/dev/null
section "Scenario: token-bucket upstream (${seconds} s per mode)"
python3 bench/scenario.py --binary "$binary" --seconds "$seconds" --upstream token-bucket 2>/dev/null

section "Simulator"
python3 bench/simulate_tables.py --binary "$binary" ${sim_flags[@]+"${sim_flags[@]}"}

section "Simulator: enforcement as N grows"
python3 bench/simulate_tables.py --binary "$binary" --enforcement-scale ${sim_flags[@]+"${sim_flags[@]}"}

if [[ $quick == 0 ]]; then
    section "Simulator: 1,000 nodes for 60 virtual seconds"
    python3 bench/simulate_tables.py --binary "$binary" --scale --repeats 1
    section "Simulator: rights over more seeds"
    python3 bench/rights_seeds.py "$binary"
    section "Simulator: 10,000 nodes (about 10 minutes and 12 GB)"
    python3 bench/simulate_tables.py --binary "$binary" --ten-thousand
fi

section "Plot: convergence by N and loss (bench/plots/convergence.png)"
if python3 -c "import matplotlib" 2>/dev/null; then
    if [[ $quick == 1 ]]; then
        python3 bench/plot_convergence.py "$binary" --quick --out "$(mktemp -d)/convergence.png"
    else
        python3 bench/plot_convergence.py "$binary"
    fi
else
    echo "skipped: matplotlib is not installed (python3 -m pip install matplotlib)"
fi

section "Micro-benchmarks (ordo-one/benchmark)"
swift package --package-path Benchmarks benchmark --format markdown --no-progress ${micro_flags[@]+"${micro_flags[@]}"}

section "Acquire over the loopback HTTP API"
if command -v wrk >/dev/null; then
    bash bench/acquire_http.sh "$binary" 16 10
    if python3 -c "import matplotlib" 2>/dev/null; then
        section "Plot: the acquire latency distribution (bench/plots/acquire_latency.png)"
        if [[ $quick == 1 ]]; then
            python3 bench/plot_acquire_latency.py "$binary" --repeats 1 --seconds 5 --out "$(mktemp -d)/acquire_latency.png"
        else
            python3 bench/plot_acquire_latency.py "$binary"
        fi
    fi
else
    echo "skipped: wrk is not installed (apt-get install -y wrk)"
fi
