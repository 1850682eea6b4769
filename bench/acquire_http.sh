#!/usr/bin/env bash
# Acquire over the loopback HTTP API: throughput and latency percentiles with wrk (issue 5).
# Usage: bash bench/acquire_http.sh [path/to/quotamesh] [connections] [seconds]
set -euo pipefail
QM=$(cd "$(dirname "${1:-.build/release/quotamesh}")" && pwd)/$(basename "${1:-.build/release/quotamesh}")
CONNECTIONS=${2:-16}
SECONDS_RUN=${3:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
gossip_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# A limit high enough that every call is granted: this measures the API and the decision, not denials.
echo '{"services": {"bench": {"limit": 1000000000, "window": "1h", "burst": 1}}}' > "$dir/config.json"
(cd "$dir" && exec "$QM" run --config config.json --gossip 127.0.0.1:$gossip_port --api 127.0.0.1:$api_port --log-level warning) &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && break; sleep 0.1; done
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"service":"bench","priority":"urgent","cost":1}'
wrk.headers["Content-Type"] = "application/json"
-- The whole latency distribution, for bench/plot_acquire_latency.py (which sets
-- QUOTAMESH_BENCH_PERCENTILES): "percentile P MICROSECONDS" lines.
done = function(summary, latency, requests)
  if not os.getenv("QUOTAMESH_BENCH_PERCENTILES") then return end
  for _, p in ipairs({1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97, 98, 99, 99.5, 99.9, 99.95, 99.99}) do
    io.write(string.format("percentile %g %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("percentile 100 %d\n", latency.max))
end
LUA
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency -s "$dir/post.lua" "http://127.0.0.1:$api_port/v1/acquire"
echo "granted so far: $(curl -s "http://127.0.0.1:$api_port/v1/quota/bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["consumed"]["local"])')"
