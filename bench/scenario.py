#!/usr/bin/env python3
"""Scenario benchmark (issue 5): the same agent load three ways, side by side, with real processes,
real HTTP and real UDP on loopback.

  naive     each task retries the upstream with exponential backoff and jitter (5 tries, 2^n + U(0,1) s)
  central   every agent asks one shared limiter (a single quotamesh node) before each call
  quotamesh every agent has its own quotamesh node; it acquires before each call and observes each reply

Halfway through, one node is killed (in central mode: the shared limiter), and a second table
compares each mode's first and second halves.

The upstream is a fixed window (LIMIT calls per WINDOW s, `x-ratelimit-*` headers with an epoch reset)
or, with --upstream token-bucket, a token bucket refilled at LIMIT/WINDOW calls a second with room for
BUCKET_SECONDS of them (OpenAI-style `x-ratelimit-*-requests` headers, the reset a duration until full).

Usage: python3 bench/scenario.py [--binary .build/release/quotamesh] [--seconds 60] [--agents 20]
                                 [--upstream fixed|token-bucket] [--modes naive,central,quotamesh]
"""
import argparse
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LIMIT = 100
WINDOW = 10.0
BUCKET_SECONDS = WINDOW  # room for a whole window of calls, like an API with a per-minute limit refilled continuously


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A stand-in API with a real quota: a fixed window of LIMIT calls per WINDOW seconds, or a token
    bucket with the same long-run rate."""

    def __init__(self, kind="fixed"):
        self.lock = threading.Lock()
        self.calls = []  # (time, status)
        self.window_counts = {}
        self.kind = kind
        self.rate = LIMIT / WINDOW
        self.capacity = self.rate * BUCKET_SECONDS
        self.tokens = self.capacity
        self.refilled_at = time.time()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                if upstream.kind == "token-bucket":
                    return self.token_bucket()
                now = time.time()
                window = int(now // WINDOW)
                end = (window + 1) * WINDOW
                with upstream.lock:
                    used = upstream.window_counts.get(window, 0)
                    status = 200 if used < LIMIT else 429
                    if status == 200:
                        upstream.window_counts[window] = used + 1
                        used += 1
                    upstream.calls.append((now, status))
                self.send_response(status)
                self.send_header("x-ratelimit-limit", str(LIMIT))
                self.send_header("x-ratelimit-remaining", str(max(0, LIMIT - used)))
                self.send_header("x-ratelimit-reset", str(int(end + 0.999)))
                if status == 429:
                    self.send_header("retry-after", str(max(1, int(end - now + 0.999))))
                self.send_header("content-length", "0")
                self.end_headers()

            def token_bucket(self):
                now = time.time()
                with upstream.lock:
                    upstream.tokens = min(upstream.capacity, upstream.tokens + (now - upstream.refilled_at) * upstream.rate)
                    upstream.refilled_at = now
                    status = 200 if upstream.tokens >= 1 else 429
                    if status == 200:
                        upstream.tokens -= 1
                    upstream.calls.append((now, status))
                    tokens = upstream.tokens
                self.send_response(status)
                self.send_header("x-ratelimit-limit-requests", str(int(upstream.capacity)))
                self.send_header("x-ratelimit-remaining-requests", str(int(tokens)))
                self.send_header("x-ratelimit-reset-requests", f"{(upstream.capacity - tokens) / upstream.rate:.3f}s")
                if status == 429:
                    self.send_header("retry-after-ms", str(int((1 - tokens) / upstream.rate * 1000) + 1))
                self.send_header("content-length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def call(self):
        """(status, headers); status 0 when the call failed at the transport (the server is stopping, or
        a connection was reset), which a task treats like any other failed call."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("POST", "/v1/complete", body=b"{}")
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            response.read()
            conn.close()
            return response.status, headers
        except OSError:
            return 0, {}

    def stop(self):
        self.server.shutdown()


def post(port, path, body, timeout=15):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data or b"{}")


class Mesh:
    """quotamesh nodes in a temporary folder, all trusting each other."""

    def __init__(self, binary, count, root, refill="window"):
        self.binary = binary
        self.nodes = []
        for index in range(count):
            folder = os.path.join(root, f"n{index}")
            os.makedirs(folder)
            subprocess.run([binary, "keygen"], cwd=folder, check=True, capture_output=True)
            key = subprocess.run([binary, "id"], cwd=folder, check=True, capture_output=True, text=True).stdout.split()[0]
            self.nodes.append({"dir": folder, "key": key, "gossip": free_port(socket.SOCK_DGRAM), "api": free_port(), "proc": None})
        for node in self.nodes:
            for other in self.nodes:
                if other is not node:
                    subprocess.run([binary, "peer", "add", os.path.basename(other["dir"]), "--key", other["key"],
                                    "--endpoint", f"127.0.0.1:{other['gossip']}"], cwd=node["dir"], check=True, capture_output=True)
            with open(os.path.join(node["dir"], "config.json"), "w") as f:
                # In front of a token bucket the nodes are told so: their rights accrue at its refill rate.
                json.dump({"services": {"api": {"limit": LIMIT, "window": f"{int(WINDOW)}s", "refill": refill}}}, f)
        for node in self.nodes:
            node["proc"] = subprocess.Popen([binary, "run", "--config", "config.json", "--gossip", f"127.0.0.1:{node['gossip']}",
                                             "--api", f"127.0.0.1:{node['api']}"], cwd=node["dir"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        for node in self.nodes:
            while time.time() < deadline:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", node["api"], timeout=1)
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
        time.sleep(3)  # past the learning period

    def kill(self, index):
        self.nodes[index]["proc"].send_signal(signal.SIGKILL)

    def stop(self):
        for node in self.nodes:
            if node["proc"].poll() is None:
                node["proc"].send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node["proc"].wait(timeout=5)
            except subprocess.TimeoutExpired:
                node["proc"].kill()


KILLED = 2  # the agent whose node is killed in quotamesh mode: a normal one (agents 0 and 1 are urgent)


def window_stats(calls, first, last):
    """(max admitted ÷ limit, mean successful ÷ limit) over the whole windows in [first, last)."""
    windows = {}
    for t, status in calls:
        w = int(t // WINDOW)
        if first <= w < last:
            windows.setdefault(w, [0, 0])
            windows[w][0] += 1
            windows[w][1] += status == 200
    if not windows:
        return None, None  # no whole window on this side (a short run): printed as "-"
    return (max(c[0] for c in windows.values()) / LIMIT, statistics.mean(c[1] for c in windows.values()) / LIMIT)


def quantiles(values):
    """(p50, p99) of `values` (sorted), to 3 places; (None, None) when empty."""
    if not values:
        return None, None
    return round(values[len(values) // 2], 3), round(values[min(len(values) - 1, int(len(values) * 0.99))], 3)


def rounded(value):
    """`value` to 3 places, or "-" when there was nothing to measure."""
    return "-" if value is None else round(value, 3)


def run_mode(mode, binary, seconds, agents, seed, upstream_kind):
    random.seed(seed)
    upstream = Upstream(upstream_kind)
    root = tempfile.mkdtemp(prefix=f"qm-{mode}-")
    mesh = None
    if mode == "central":
        mesh = Mesh(binary, 1, root, refill="continuous" if upstream_kind == "token-bucket" else "window")
    elif mode == "quotamesh":
        mesh = Mesh(binary, agents, root, refill="continuous" if upstream_kind == "token-bucket" else "window")
    priorities = ["urgent"] * 2 + ["normal"] * 12 + ["low"] * 6
    priorities = (priorities * ((agents // 20) + 1))[:agents]
    rate = 2.0 * LIMIT / WINDOW / agents  # tasks per second per agent: about 2x the limit in total
    results = []  # (agent, priority, created, finished or None, told_not_now, answered)
    lock = threading.Lock()
    start = time.time()
    stop_at = start + seconds
    killed = {"at": None}

    def agent_loop(index):
        priority = priorities[index]
        node_port = None
        if mode == "central":
            node_port = mesh.nodes[0]["api"]
        elif mode == "quotamesh":
            node_port = mesh.nodes[index]["api"]
        rng = random.Random(seed * 1000 + index)
        next_task = time.time() + rng.expovariate(rate)
        threads = []

        def task(created):
            told, answered, finished = 0, True, None
            if mode == "naive":
                for attempt in range(5):
                    status, _ = upstream.call()
                    if status == 200:
                        finished = time.time()
                        break
                    time.sleep(2 ** attempt + rng.random())
            else:
                while time.time() < stop_at + 30:
                    try:
                        status, body = post(node_port, "/v1/acquire", {"service": "api", "priority": priority, "wait_ms": 2000})
                    except OSError:
                        answered = False
                        # The node is gone: the agent has no answer; retry later.
                        time.sleep(1)
                        continue
                    if status == 200:
                        code, headers = upstream.call()
                        try:
                            post(node_port, "/v1/observe", {"service": "api", "status": code, "headers": headers})
                        except OSError:
                            pass
                        if code == 200:
                            finished = time.time()
                            break
                        continue
                    told += 1
                    retry = body.get("retry_after_ms", 1000) / 1000.0
                    time.sleep(min(max(retry, 0.01), 5))
            with lock:
                results.append((index, priority, created, finished, told, answered))

        while time.time() < stop_at:
            now = time.time()
            if now >= next_task:
                thread = threading.Thread(target=task, args=(now,), daemon=True)
                thread.start()
                threads.append(thread)
                next_task += rng.expovariate(rate)
            time.sleep(min(0.05, max(0, next_task - time.time())))
        for thread in threads:
            thread.join(timeout=40)

    def killer():
        time.sleep(seconds / 2)
        killed["at"] = time.time()
        if mesh is not None:
            mesh.kill(KILLED if mode == "quotamesh" else 0)

    workers = [threading.Thread(target=agent_loop, args=(i,), daemon=True) for i in range(agents)]
    threading.Thread(target=killer, daemon=True).start()
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 60)
    upstream.stop()
    if mesh is not None:
        mesh.stop()
    shutil.rmtree(root, ignore_errors=True)

    calls = upstream.calls
    # Whole windows only, from the first after the start to the last before the end of task creation.
    first, last = int(start // WINDOW) + 1, int(stop_at // WINDOW)
    kill_window = int(killed["at"] // WINDOW) if killed["at"] else last
    max_admitted, utilization = window_stats(calls, first, last)
    summary = {"mode": mode, "upstream": upstream_kind, "upstream_calls": len(calls),
               "upstream_429s": sum(1 for _, s in calls if s == 429),
               "max_admitted_ratio": rounded(max_admitted), "utilization": rounded(utilization), "priorities": {},
               "halves": {},
               # When in its window each 429 came (s after the window's start), to tell boundary effects apart.
               "429_offsets_s": [round(t % WINDOW, 3) for t, status in calls if status == 429][:50]}
    for half, (low, high, w0, w1) in {"before_kill": (0, killed["at"] or stop_at, first, kill_window),
                                      "after_kill": (killed["at"] or stop_at, float("inf"), kill_window + 1, last)}.items():
        mine = [r for r in results if low <= r[2] < high]
        half_calls = [c for c in calls if low <= c[0] < high]
        admitted, used = window_stats(calls, w0, w1)
        summary["halves"][half] = {
            "upstream_calls": len(half_calls), "upstream_429s": sum(1 for _, s in half_calls if s == 429),
            "max_admitted_ratio": rounded(admitted), "utilization": rounded(used),
            "tasks": len(mine), "succeeded": sum(1 for r in mine if r[3] is not None),
            "urgent": f"{sum(1 for r in mine if r[1] == 'urgent' and r[3] is not None)}/{sum(1 for r in mine if r[1] == 'urgent')}",
            "unanswered": sum(1 for r in mine if not r[5]),
            "killed_agent": f"{sum(1 for r in mine if r[0] == KILLED and r[3] is not None)}/{sum(1 for r in mine if r[0] == KILLED)}"
            if mode == "quotamesh" else "-",
        }
    # When the last call the connected nodes could make in each window reached the upstream (absent: they
    # never made it): the LIMIT-th call, or in quotamesh mode, in the windows wholly after the kill, the
    # call before the killed node's part (its rights stay with it until the window ends).
    spent_at, counts = {}, {}
    for t, _ in sorted(calls):
        w = int(t // WINDOW)
        counts[w] = counts.get(w, 0) + 1
        reachable = LIMIT - LIMIT // agents if mode == "quotamesh" and w > kill_window else LIMIT
        if counts[w] == reachable:
            spent_at[w] = t
    for priority in ("urgent", "normal", "low"):
        mine = [r for r in results if r[1] == priority]
        waits = sorted(r[3] - r[2] for r in mine if r[3] is not None)
        p50, p99 = quantiles(waits)
        summary["priorities"][priority] = {
            "tasks": len(mine), "succeeded": len(waits), "p50_s": p50, "p99_s": p99,
            "told_not_now": sum(r[4] for r in mine),
            "unanswered": sum(1 for r in mine if not r[5]),
        }
    # Urgent tasks made while their window still had a call left that the connected nodes could make
    # (above), and 50 ms clear of its end (the nodes spend no rights in a window's last 50 ms): the
    # simulator's "where rights exist" seen from the upstream. A task that never succeeded counts as 30 s.
    left = [r for r in results if r[1] == "urgent" and (r[2] % WINDOW) < WINDOW - 0.05
            and r[2] < spent_at.get(int(r[2] // WINDOW), float("inf"))]
    waits = sorted((r[3] - r[2]) if r[3] is not None else 30.0 for r in left)
    p50, p99 = quantiles(waits)
    summary["urgent_where_calls_were_left"] = {
        "tasks": len(waits), "p50_s": p50, "p99_s": p99, "max_s": round(waits[-1], 3) if waits else None,
    }
    return summary


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/quotamesh")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="naive,central,quotamesh")
    parser.add_argument("--upstream", choices=["fixed", "token-bucket"], default="fixed")
    parser.add_argument("--tables-from", metavar="FILE",
                        help="print the tables again from the JSON line an earlier run wrote to stderr")
    options = parser.parse_args()
    if options.tables_from:
        with open(options.tables_from) as f:
            print_tables(json.loads(f.read().strip().splitlines()[-1]))
        return
    rows = []
    for mode in options.modes.split(","):
        print(f"running {mode} for {options.seconds}s against a {options.upstream} upstream ...", file=sys.stderr, flush=True)
        rows.append(run_mode(mode, os.path.abspath(options.binary), options.seconds, options.agents, options.seed,
                             options.upstream))
    print_tables(rows)
    print(json.dumps(rows), file=sys.stderr)


def print_tables(rows):
    print("| mode | upstream calls | upstream 429s | max admitted/limit | utilization | urgent ok/tasks, p50/p99 s, told not now | normal ok/tasks, p50/p99 s, told not now | low ok/tasks, p50/p99 s, told not now | told not now (all) | unanswered |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = []
        for priority in ("urgent", "normal", "low"):
            p = r["priorities"][priority]
            cells.append(f"{p['succeeded']}/{p['tasks']}, {p['p50_s']}/{p['p99_s']}, {p['told_not_now']}")
        told = sum(r["priorities"][p]["told_not_now"] for p in r["priorities"])
        unanswered = sum(r["priorities"][p]["unanswered"] for p in r["priorities"])
        print(f"| {r['mode']} | {r['upstream_calls']} | {r['upstream_429s']} | {r['max_admitted_ratio']} | {r['utilization']} | "
              + " | ".join(cells) + f" | {told} | {unanswered} |")
    print()
    print("Urgent tasks made while their window still had a call left that the live nodes could make (in quotamesh mode the")
    print("killed node keeps its part of every window after the kill), 50 ms clear of the window's end:")
    print()
    print("| mode | tasks | wait p50 s | wait p99 s | max s |")
    print("|---|---|---|---|---|")
    for r in rows:
        u = r.get("urgent_where_calls_were_left")
        if u:
            print(f"| {r['mode']} | {u['tasks']} | {u['p50_s']} | {u['p99_s']} | {u['max_s']} |")
    print()
    print("Before and after the kill (tasks by creation time; windows wholly on one side):")
    print()
    print("| mode | half | upstream calls | upstream 429s | max admitted/limit | utilization | tasks ok/created | urgent ok/created | unanswered | killed node's agent ok/created |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for half in ("before_kill", "after_kill"):
            h = r["halves"][half]
            print(f"| {r['mode']} | {half.replace('_', ' ')} | {h['upstream_calls']} | {h['upstream_429s']} | {h['max_admitted_ratio']} | "
                  f"{h['utilization']} | {h['succeeded']}/{h['tasks']} | {h['urgent']} | {h['unanswered']} | {h['killed_agent']} |")


if __name__ == "__main__":
    main()
