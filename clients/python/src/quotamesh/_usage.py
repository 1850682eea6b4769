"""Costs estimated from LLM requests, and usage read from their answers, in the node's dimensions.

OpenAI counts `tokens` (prompt plus completion); Anthropic counts `input_tokens` and `output_tokens` apart
and `tokens` together. An estimate is deliberately high (the prompt's characters / 3, plus the most the
call may generate); the usage reported afterwards refunds the difference.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, Mapping, Optional

Costs = Dict[str, int]

#: What a request that names no `max_tokens` is assumed to generate at most.
DEFAULT_MAX_OUTPUT_TOKENS = 4096

#: Characters per token assumed for a prompt: a little under the usual four, so that estimates err high.
CHARACTERS_PER_TOKEN = 3


def flavor(path: str) -> Optional[str]:
    """Which API a request path belongs to: "anthropic" (`/v1/messages`), "openai" (completions,
    responses, embeddings) or None (anything else: counted in requests only)."""
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith(("/chat/completions", "/completions", "/responses", "/embeddings")):
        return "openai"
    return None


def _text_length(value: Any) -> int:
    """Characters of text in a prompt, however nested (strings, content parts, tool definitions)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_length(v) for k, v in value.items() if k not in ("role", "type", "model"))
    if isinstance(value, (list, tuple)):
        return sum(_text_length(v) for v in value)
    return 0


def estimate_cost(path: str, body: bytes, default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS) -> Costs:
    """The cost to acquire for a request: one request, and for an LLM call its tokens, estimated high."""
    kind = flavor(path)
    if kind is None or not body:
        return {"requests": 1}
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"requests": 1}
    if not isinstance(payload, dict):
        return {"requests": 1}
    prompt_parts = [payload.get(k) for k in ("messages", "prompt", "input", "system", "instructions", "tools")]
    prompt = math.ceil(sum(_text_length(p) for p in prompt_parts if p is not None) / CHARACTERS_PER_TOKEN)
    if path.endswith("/embeddings"):
        return {"requests": 1, "tokens": max(1, prompt)}
    output = None
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if isinstance(payload.get(key), int) and payload[key] > 0:
            output = payload[key]
            break
    output = output if output is not None else default_max_output
    # `n` completions each generate up to the maximum.
    choices = payload.get("n") if isinstance(payload.get("n"), int) and payload.get("n", 1) > 1 else 1
    output *= choices
    if kind == "anthropic":
        return {"requests": 1, "tokens": prompt + output, "input_tokens": max(1, prompt), "output_tokens": output}
    return {"requests": 1, "tokens": max(1, prompt + output)}


def usage_dimensions(usage: Any) -> Costs:
    """A usage block (OpenAI's, Anthropic's, an SDK's usage object, or a mapping of dimensions already)
    in the node's dimensions; empty when it says nothing countable."""
    if usage is None:
        return {}
    if not isinstance(usage, Mapping):
        # An SDK object (pydantic): its fields as a mapping.
        dump = getattr(usage, "model_dump", None) or getattr(usage, "dict", None)
        usage = dump() if callable(dump) else dict(getattr(usage, "__dict__", {}))
    numbers = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    if "prompt_tokens" in numbers or "completion_tokens" in numbers:  # OpenAI chat and completions
        total = numbers.get("total_tokens", numbers.get("prompt_tokens", 0) + numbers.get("completion_tokens", 0))
        return {"tokens": total}
    if "input_tokens" in numbers or "output_tokens" in numbers:
        if "total_tokens" in numbers:  # OpenAI responses
            return {"tokens": numbers["total_tokens"]}
        # Anthropic: input counts what was not read from the cache.
        input_tokens = numbers.get("input_tokens", 0) + numbers.get("cache_creation_input_tokens", 0)
        output_tokens = numbers.get("output_tokens", 0)
        return {"tokens": input_tokens + output_tokens, "input_tokens": input_tokens, "output_tokens": output_tokens}
    if "total_tokens" in numbers:  # OpenAI embeddings
        return {"tokens": numbers["total_tokens"]}
    # Already in dimensions: {"tokens": 1234}.
    return {k: v for k, v in numbers.items() if k != "requests"}


def usage_from_json(body: bytes) -> Costs:
    """The usage an LLM answer's JSON body states, in the node's dimensions."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return usage_dimensions(payload.get("usage")) if isinstance(payload, dict) else {}


class StreamUsage:
    """Collects the usage a server-sent event stream states as it passes: OpenAI's last chunk (with
    `stream_options: {"include_usage": true}`), Anthropic's `message_start` and `message_delta`."""

    def __init__(self) -> None:
        self._pending = b""
        self._usage: Dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        self._read(lines)

    def finish(self) -> Costs:
        self._read([self._pending])
        self._pending = b""
        return usage_dimensions(self._usage) if self._usage else {}

    def _read(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            try:
                event = json.loads(line[5:].strip())
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(event, dict):
                continue
            message = event.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self._usage.update(message["usage"])
            if isinstance(event.get("usage"), dict):
                self._usage.update({k: v for k, v in event["usage"].items() if v is not None})
