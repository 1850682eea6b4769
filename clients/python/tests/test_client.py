"""The client against a real node: grants, denials, reports, refunds, tokens, and the decorator."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from quotamesh import BadRequest, Client, NodeUnreachable, QuotaDenied, Unauthorized

# Windows of 30 days: no reset falls within a test that counts what was consumed.
OPENAI = {"openai": {"limit": 100, "window": "30d", "limits": {"tokens": {"limit": 100000, "window": "30d"}}}}


def test_a_grant_reports_its_usage_and_the_difference_is_refunded(start_node):
    node = start_node(OPENAI)
    client = Client(base_url=node.url)
    with client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 1800}, wait=5.0) as grant:
        assert grant.granted and not grant.ungated
        assert grant.cost == {"requests": 1, "tokens": 1800}
        assert grant.account == "default"
        assert node.consumed("openai", "tokens") == 1800  # reserved at the grant
        answer = grant.report(200, {"x-ratelimit-remaining-requests": "99"}, usage={"tokens": 300})
    assert answer["quota"]["service"] == "openai"
    assert node.consumed("openai", "tokens") == 300  # 1,500 refunded
    assert node.consumed("openai", "requests") == 1


def test_a_block_left_without_a_report_reports_and_refunds_nothing(start_node):
    node = start_node(OPENAI)
    client = Client(base_url=node.url)
    with client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 900}, wait=5.0):
        pass
    assert node.consumed("openai", "tokens") == 900


def test_an_sdk_usage_object_is_read_in_the_nodes_dimensions(start_node):
    class CompletionUsage:  # the shape of openai's pydantic model
        def model_dump(self):
            return {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}

    node = start_node(OPENAI)
    client = Client(base_url=node.url)
    with client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 1000}, wait=5.0) as grant:
        grant.report(200, None, usage=CompletionUsage())
    assert node.consumed("openai", "tokens") == 100


def test_a_spent_window_is_a_denial_with_reason_and_time(start_node):
    node = start_node({"github": {"limit": 2, "window": "30d"}})
    client = Client(base_url=node.url)
    for _ in range(2):
        with client.acquire("github", priority="urgent", wait=5.0) as grant:
            grant.report(200, {})
    started = time.monotonic()
    with pytest.raises(QuotaDenied) as denied:
        with client.acquire("github", priority="urgent", wait=0.5):
            pytest.fail("granted a third call in a window of two")
    assert denied.value.reason == "quota_exhausted"
    assert denied.value.detail is not None
    assert denied.value.retry_after > 0.5
    assert time.monotonic() - started < 5  # refused at once: no grant could come within the wait


def test_an_unknown_service_goes_ahead_and_its_report_teaches_the_node(start_node):
    node = start_node({})
    client = Client(base_url=node.url)
    with client.acquire("github", wait=1.0) as grant:
        assert grant.ungated and not grant.granted
        grant.report(200, {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990",
                           "x-ratelimit-reset": str(int(time.time()) + 3600)})
    quota = client.quota("github")
    assert quota["limit"] == 5000


def test_a_misspelt_priority_and_a_bad_cost_are_refused_with_the_field_named(start_node):
    node = start_node(OPENAI)
    client = Client(base_url=node.url)
    with pytest.raises(BadRequest, match="priority"):
        client.acquire("openai", priority="urgnet")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="cost"):
        with client.acquire("openai", cost=-1):
            pass


def test_a_node_with_a_token_needs_it(start_node):
    node = start_node(OPENAI, token="s3cret-token-for-tests")
    with pytest.raises(Unauthorized):
        Client(base_url=node.url, token="wrong").quota("openai")
    client = Client(base_url=node.url, token="s3cret-token-for-tests")
    with client.acquire("openai", priority="urgent", wait=5.0) as grant:
        assert grant.granted


def test_no_node_is_a_clear_error():
    with pytest.raises(NodeUnreachable, match="127.0.0.1:9"):
        Client(base_url="http://127.0.0.1:9", timeout=1.0).quota()


def test_the_decorator_acquires_each_call_and_reports_what_it_returns(start_node, upstream_factory):
    upstream = upstream_factory(50, 60.0)
    node = start_node(OPENAI)
    client = Client(base_url=node.url)

    @client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 500}, wait=5.0)
    def ask(text):
        return httpx.post(f"{upstream.url}/v1/chat/completions",
                          json={"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 5})

    first, second = ask("hello"), ask("again")
    assert first.status_code == second.status_code == 200
    used = sum(u["total_tokens"] for u in upstream.usages)
    assert node.consumed("openai", "requests") == 2
    assert node.consumed("openai", "tokens") == used  # each reported with its usage: 2 × 500 refunded to it


def test_asyncio_acquire_and_decorator(start_node, upstream_factory):
    upstream = upstream_factory(50, 60.0)
    node = start_node(OPENAI)
    client = Client(base_url=node.url)

    @client.acquire("openai", priority="urgent", wait=5.0)
    async def ask():
        async with httpx.AsyncClient() as http:
            return await http.post(f"{upstream.url}/v1/chat/completions", json={"model": "m", "messages": []})

    async def main():
        async with client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 100}, wait=5.0) as grant:
            await grant.report(200, {}, usage={"tokens": 40})
        results = await asyncio.gather(ask(), ask(), ask())
        return [r.status_code for r in results]

    assert asyncio.run(main()) == [200, 200, 200]
    assert node.consumed("openai", "requests") == 4


def test_a_grant_is_reported_once(start_node):
    node = start_node(OPENAI)
    client = Client(base_url=node.url)
    with client.acquire("openai", priority="urgent", wait=5.0) as grant:
        grant.report(200, {})
        with pytest.raises(Exception, match="already reported"):
            grant.report(429, {"retry-after": "30"})
    assert client.quota("openai")["breaker"]["state"] == "closed"
