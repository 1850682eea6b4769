"""A stand-in for the OpenAI and Anthropic APIs: a real HTTP server on loopback with a fixed-window limit
per epoch-aligned window, their rate-limit headers, 429s past the limit, and `usage` in every answer."""
from __future__ import annotations

import json
import math
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Tuple

COMPLETION_TOKENS = 7


def prompt_tokens(payload: Dict[str, Any]) -> int:
    text = json.dumps(payload.get("messages", payload.get("prompt", "")))
    return max(1, math.ceil(len(text) / 4))


class StandInUpstream:
    """`limit` calls per `window` seconds, windows aligned to the epoch as the node aligns its own."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self.lock = threading.Lock()
        self.sent: Dict[int, int] = {}  # window index: calls answered 200
        self.rejected = 0  # calls answered 429
        self.usages: List[Dict[str, int]] = []
        self.requests: List[Tuple[str, Dict[str, Any]]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                upstream.answer(self, self.path, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def max_in_one_window(self) -> int:
        with self.lock:
            return max(self.sent.values(), default=0)

    def answer(self, handler: BaseHTTPRequestHandler, path: str, payload: Dict[str, Any]) -> None:
        now = time.time()
        index = int(now // self.window)
        reset_at = (index + 1) * self.window
        with self.lock:
            self.requests.append((path, payload))
            used = self.sent.get(index, 0)
            allowed = used < self.limit
            if allowed:
                self.sent[index] = used + 1
                used += 1
            else:
                self.rejected += 1
        remaining = max(0, self.limit - used)
        anthropic = path.endswith("/messages")
        if anthropic:
            reset = datetime.fromtimestamp(math.ceil(reset_at), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            headers = {"anthropic-ratelimit-requests-limit": str(self.limit),
                       "anthropic-ratelimit-requests-remaining": str(remaining),
                       "anthropic-ratelimit-requests-reset": reset}
        else:
            headers = {"x-ratelimit-limit-requests": str(self.limit),
                       "x-ratelimit-remaining-requests": str(remaining),
                       "x-ratelimit-reset-requests": f"{max(0.001, reset_at - now):.3f}s"}
        if not allowed:
            headers["retry-after"] = str(max(1, math.ceil(reset_at - now)))
            self.send_json(handler, 429, {"type": "error", "error": {"type": "rate_limit_error", "message": "over the limit"}}, headers)
            return
        prompt = prompt_tokens(payload)
        completion = min(COMPLETION_TOKENS, int(payload.get("max_tokens") or COMPLETION_TOKENS))
        model = payload.get("model", "stand-in")
        if anthropic:
            usage = {"input_tokens": prompt, "output_tokens": completion}
            with self.lock:
                self.usages.append(usage)
            if payload.get("stream"):
                self.send_events(handler, headers, [
                    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                     "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
                     "usage": {"input_tokens": prompt, "output_tokens": 1}}},
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
                    {"type": "content_block_stop", "index": 0},
                    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                     "usage": {"output_tokens": completion}},
                    {"type": "message_stop"}], anthropic=True)
                return
            self.send_json(handler, 200, {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": usage}, headers)
            return
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        with self.lock:
            self.usages.append(usage)
        if payload.get("stream"):
            chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(now), "model": model}
            events = [dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]),
                      dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])]
            if (payload.get("stream_options") or {}).get("include_usage"):
                events.append(dict(chunk, choices=[], usage=usage))
            self.send_events(handler, headers, events, anthropic=False)
            return
        self.send_json(handler, 200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(now), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage}, headers)

    @staticmethod
    def send_json(handler: BaseHTTPRequestHandler, status: int, body: Dict[str, Any], headers: Dict[str, str]) -> None:
        StandInUpstream.send(handler, status, headers, "application/json", json.dumps(body).encode())

    @staticmethod
    def send_events(handler: BaseHTTPRequestHandler, headers: Dict[str, str], events: List[Dict[str, Any]], anthropic: bool) -> None:
        lines = []
        for event in events:
            if anthropic:
                lines.append(f"event: {event['type']}\n")
            lines.append(f"data: {json.dumps(event)}\n\n")
        if not anthropic:
            lines.append("data: [DONE]\n\n")
        StandInUpstream.send(handler, 200, headers, "text/event-stream", "".join(lines).encode())

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, headers: Dict[str, str], content_type: str, data: bytes) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
