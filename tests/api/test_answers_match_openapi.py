"""Real answers of a real node, validated against openapi.yaml (issue 20): every path, every status the
document gives that one node can be brought to answer, and each denial `reason`. Each body is checked
against its operation's schema for that status with a JSON Schema 2020-12 validator (OpenAPI 3.1), with
every object schema closed (`unevaluatedProperties: false`), so an answer with a field the document does
not list fails as surely as one that lacks a required field or has the wrong type."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

DOCUMENT = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
REASONS = set(DOCUMENT["components"]["schemas"]["Reason"]["enum"])


def closed(schema: Any, member: bool = False) -> Any:
    """The schema with every object it describes closed to properties it does not list. A schema that is
    a member of an `allOf` stays open (its siblings list the rest); the `allOf` is closed where it stands,
    and a reference points to the closed form of its component unless it is such a member."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {}
    for key, value in schema.items():
        if key == "allOf":
            result[key] = [closed(item, member=True) for item in value]
        elif key in ("properties", "patternProperties", "$defs"):
            result[key] = {name: closed(inner) for name, inner in value.items()}
        else:
            result[key] = closed(value)
    reference = result.get("$ref", "")
    if reference.startswith("#/components/schemas/") and not member:
        result["$ref"] = reference + "_closed"
    elif not member and ("properties" in result or "allOf" in result) and "additionalProperties" not in result:
        result["unevaluatedProperties"] = False
    return result


def closed_components(components: Dict[str, Any]) -> Dict[str, Any]:
    """Each schema open (for use inside an `allOf`) and, beside it, its closed form `NAME_closed`."""
    schemas: Dict[str, Any] = {}
    for name, schema in components["schemas"].items():
        schemas[name] = closed(schema, member=True)
        schemas[name + "_closed"] = {"$ref": f"#/components/schemas/{name}", "unevaluatedProperties": False}
    return {**components, "schemas": schemas}


COMPONENTS = closed_components(DOCUMENT["components"])


def response_schema(path: str, method: str, status: int) -> Tuple[Dict[str, Any], str]:
    """The schema and media type the document gives for `status` of `method path`."""
    responses = DOCUMENT["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which openapi.yaml does not list"
    response = responses[str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    media, content = next(iter(response["content"].items()))
    return closed(copy.deepcopy(content["schema"])), media


def check(path: str, method: str, answer: httpx.Response) -> Any:
    """Validates `answer` against the document; returns its body (parsed when JSON)."""
    schema, media = response_schema(path, method, answer.status_code)
    assert answer.headers["content-type"].startswith(media), f"{path}: {answer.headers['content-type']} is not {media}"
    body = answer.json() if media == "application/json" else answer.text
    validator = Draft202012Validator({**schema, "components": COMPONENTS})
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.absolute_path))
    assert not errors, f"{method.upper()} {path} {answer.status_code}: " + "; ".join(
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}" for error in errors[:5])
    return body


SERVICES = {
    "llm": {"limit": 3, "window": "1h"},
    "tiered": {"limit": 20, "window": "1h", "burst": 1, "reserves": {"urgent": 0, "normal": 0.25, "low": 0.5}},
    "flaky": {"limit": 100, "window": "1h"},
}


def test_every_path_and_each_denial_reason_answers_as_documented(start_node):
    node = start_node(SERVICES)
    api = node.url
    reasons: Dict[str, List[str]] = {}

    def acquire(body: Any) -> httpx.Response:
        answer = httpx.post(f"{api}/v1/acquire", content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        parsed = check("/v1/acquire", "post", answer)
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            reasons.setdefault(parsed["reason"], []).append(parsed.get("detail", ""))
        return answer

    # Grants, by request count and by dimension, then the window spent: quota_exhausted.
    assert acquire({"service": "llm", "priority": "urgent"}).status_code == 200
    assert acquire({"service": "llm", "priority": "urgent", "cost": {"requests": 1, "tokens": 10}}).status_code == 200
    for _ in range(3):
        acquire({"service": "llm", "priority": "urgent"})
    # With one call left, low work finds it held for the priorities above it (a reserve shrinks as the
    # window runs out, but is never nothing before the reset).
    for _ in range(19):
        assert acquire({"service": "tiered", "priority": "urgent"}).status_code == 200
    acquire({"service": "tiered", "priority": "low"})
    acquire({"service": "nobody"})
    # A 429 upstream opens the breaker: the next acquire is refused for it.
    observed = httpx.post(f"{api}/v1/observe", json={"service": "flaky", "status": 429, "headers": {"retry-after": "60"}})
    assert check("/v1/observe", "post", observed)["breaker_opened"] is True
    acquire({"service": "flaky", "priority": "urgent"})
    assert set(reasons) == REASONS, f"reasons answered: {reasons}; documented: {sorted(REASONS)}"

    # Refusals: an unknown field, a value out of range, a body that is not JSON, one too large; an observe
    # that contradicts itself.
    for body in ({"service": "llm", "priorty": "urgent"}, {"service": "llm", "cost": 0}, "{not json"):
        content = body if isinstance(body, str) else json.dumps(body)
        answer = httpx.post(f"{api}/v1/acquire", content=content.encode(), headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
        check("/v1/acquire", "post", answer)
    too_large = httpx.post(f"{api}/v1/acquire", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"})
    assert too_large.status_code == 413
    check("/v1/acquire", "post", too_large)
    for body in ({"service": "llm", "status": 200, "account": "typo"}, {"service": "llm", "status": 99}):
        answer = httpx.post(f"{api}/v1/observe", json=body)
        assert answer.status_code in (400, 422), answer.text
        check("/v1/observe", "post", answer)

    # The views.
    check("/v1/quota", "get", httpx.get(f"{api}/v1/quota"))
    for service in ("llm", "tiered", "flaky"):
        check("/v1/quota/{service}", "get", httpx.get(f"{api}/v1/quota/{service}"))
    missing = httpx.get(f"{api}/v1/quota/nobody")
    assert missing.status_code == 404
    check("/v1/quota/{service}", "get", missing)
    check("/v1/peers", "get", httpx.get(f"{api}/v1/peers"))
    check("/healthz", "get", httpx.get(f"{api}/healthz"))
    assert "quotamesh_" in check("/metrics", "get", httpx.get(f"{api}/metrics"))


def test_a_request_without_the_token_is_answered_as_documented(start_node):
    node = start_node({"llm": {"limit": 3, "window": "1h"}}, token="a-token-of-32-characters-or-more-0123")
    for path, method, call in (
        ("/v1/acquire", "post", lambda: httpx.post(f"{node.url}/v1/acquire", json={"service": "llm"})),
        ("/v1/observe", "post", lambda: httpx.post(f"{node.url}/v1/observe", json={"service": "llm", "status": 200})),
        ("/v1/quota", "get", lambda: httpx.get(f"{node.url}/v1/quota")),
        ("/v1/quota/{service}", "get", lambda: httpx.get(f"{node.url}/v1/quota/llm")),
        ("/v1/peers", "get", lambda: httpx.get(f"{node.url}/v1/peers")),
        ("/healthz", "get", lambda: httpx.get(f"{node.url}/healthz")),
        ("/metrics", "get", lambda: httpx.get(f"{node.url}/metrics")),
    ):
        answer = call()
        assert answer.status_code == 401, f"{path}: {answer.status_code}"
        check(path, method, answer)
    granted = httpx.post(f"{node.url}/v1/acquire", json={"service": "llm"},
                         headers={"authorization": f"Bearer {node.token}"})
    assert granted.status_code == 200
    check("/v1/acquire", "post", granted)
