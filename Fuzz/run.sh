#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted input (libFuzzer via `swift build --sanitize=fuzzer`).
#
#   bash Fuzz/run.sh                 replay the corpus, then fuzz for 600 s (the documented long run)
#   bash Fuzz/run.sh --seconds 60    replay, then fuzz for 60 s (what CI runs)
#   bash Fuzz/run.sh --replay        replay the corpus only
#   bash Fuzz/run.sh --seeds         rewrite the seed files in Fuzz/Corpus
#
# New interesting inputs go to .build-fuzz/found/ (not the repository); crashes to .build-fuzz/crashes/,
# and the run fails. Add a crash input to Fuzz/Corpus once it is fixed, so that `swift test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
mode=fuzz
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --replay) mode=replay; shift ;;
        --seeds) mode=seeds; shift ;;
        *) echo "usage: bash Fuzz/run.sh [--seconds N | --replay | --seeds]" >&2; exit 64 ;;
    esac
done
scratch=.build-fuzz
# Let libFuzzer, not the Swift runtime's backtracer, handle a crash, so that it saves the input.
export SWIFT_BACKTRACE=enable=no
if [ "$mode" = seeds ]; then
    swift run --package-path Fuzz --scratch-path "$scratch/seeds" QuotaMeshFuzzSeeds Fuzz/Corpus
    exit 0
fi
echo "building the fuzzer (release, -sanitize=fuzzer) ..."
swift build -c release --package-path Fuzz --scratch-path "$scratch/build" --product QuotaMeshFuzzer \
    --sanitize=fuzzer 2>&1 | tail -n 3
fuzzer="$scratch/build/release/QuotaMeshFuzzer"
mkdir -p "$scratch/found" "$scratch/crashes"
log="$scratch/fuzz.log"
echo "replaying Fuzz/Corpus ($(ls Fuzz/Corpus | wc -l) inputs) ..."
if ! "$fuzzer" -runs=0 -artifact_prefix="$scratch/crashes/" Fuzz/Corpus >"$log" 2>&1; then
    grep -E "Fatal error|ERROR|SUMMARY|crash-" "$log" | head -n 20 >&2
    echo "FAILED: a corpus input crashes; full output in $log" >&2
    exit 1
fi
grep -E "INITED|DONE" "$log" || true
if [ "$mode" = replay ]; then exit 0; fi
echo "fuzzing for ${seconds}s ..."
status=0
"$fuzzer" -max_total_time="$seconds" -max_len=1200 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$scratch/crashes/" -print_final_stats=1 "$scratch/found" Fuzz/Corpus >"$log" 2>&1 || status=$?
grep -E "INITED|DONE|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb" "$log" || true
if [ "$status" -ne 0 ] || ls "$scratch/crashes/" | grep -q .; then
    grep -E "Fatal error|ERROR|SUMMARY|crash-|timeout-|oom-" "$log" | head -n 20 >&2
    echo "FAILED (exit $status): inputs in $scratch/crashes/, full output in $log" >&2
    exit 1
fi
echo "no crash, timeout or memory blow-up in ${seconds}s"
