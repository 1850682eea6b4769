"""The official openai and anthropic SDKs through `Client.httpx_client` and `Client.async_httpx_client`,
against a stand-in upstream with a real limit: no 429 reaches the agent, and usage is refunded."""
from __future__ import annotations

import asyncio

import pytest

from quotamesh import Client

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

# Five calls per two seconds upstream, the same configured at the node. Where a test counts what was
# consumed, its windows are 30 days long, so that no reset falls within it.
LIMIT, WINDOW = 5, 2.0


def services(tokens_window: str = "2s"):
    limits = {"tokens": {"limit": 1_000_000, "window": tokens_window}}
    return {
        "openai": {"limit": LIMIT, "window": f"{int(WINDOW)}s", "limits": limits},
        "anthropic": {"limit": LIMIT, "window": f"{int(WINDOW)}s", "limits": dict(limits, input_tokens=limits["tokens"],
                                                                                 output_tokens=limits["tokens"])},
    }


def libraries():
    """httpx, and httpx2 where it is installed (the SDKs' own choice since anthropic 2 and openai 3)."""
    try:
        import httpx2  # noqa: F401
        return ["httpx", "httpx2"]
    except ImportError:
        return ["httpx"]


@pytest.mark.parametrize("library", libraries())
def test_openai_sdk_gets_no_429_at_three_times_the_limit(start_node, upstream_factory, library):
    upstream = upstream_factory(LIMIT, WINDOW)
    node = start_node(services())
    client = Client(base_url=node.url)
    # max_retries=0: any 429 would reach this code as an exception, none is hidden by the SDK's retries.
    http_client = client.httpx_client("openai", priority="normal", deadline=30.0, library=library)
    assert type(http_client).__module__.partition(".")[0] == library
    sdk = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="test", max_retries=0, http_client=http_client)
    calls = 3 * LIMIT
    for i in range(calls):
        completion = sdk.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=50)
        assert completion.choices[0].message.content == "ok"
    assert upstream.rejected == 0
    assert len(upstream.usages) == calls
    assert upstream.max_in_one_window() <= LIMIT


def counting_openai(start_node, upstream_factory):
    """An upstream that does not limit, a node counting tokens over 30 days, and the openai SDK through it."""
    upstream = upstream_factory(100, 60.0)
    node = start_node({"openai": {"limit": 100, "window": "30d",
                                  "limits": {"tokens": {"limit": 1_000_000, "window": "30d"}}}})
    client = Client(base_url=node.url)
    sdk = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="test", max_retries=0,
                        http_client=client.httpx_client("openai", priority="urgent"))
    return upstream, node, sdk


def test_openai_usage_is_refunded_with_no_code_in_the_agent(start_node, upstream_factory):
    upstream, node, sdk = counting_openai(start_node, upstream_factory)
    for i in range(3):
        sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi " * 50}], max_tokens=500)
    # Each acquire reserved the prompt's estimate plus 500; each report brought it down to what was used.
    used = sum(u["total_tokens"] for u in upstream.usages)
    assert used < 3 * 500
    assert node.consumed("openai", "tokens") == used


def test_openai_stream_reports_its_usage_when_it_ends(start_node, upstream_factory):
    upstream, node, sdk = counting_openai(start_node, upstream_factory)
    stream = sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "stream"}],
                                         max_tokens=400, stream=True, stream_options={"include_usage": True})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    stream.close()
    assert text == "ok"
    assert node.consumed("openai", "tokens") == upstream.usages[0]["total_tokens"]


def test_anthropic_async_sdk_gets_no_429_and_counts_input_and_output(start_node, upstream_factory):
    upstream = upstream_factory(LIMIT, WINDOW)
    node = start_node(services(tokens_window="30d"))
    client = Client(base_url=node.url)
    sdk = anthropic.AsyncAnthropic(base_url=upstream.url, api_key="test", max_retries=0,
                                   http_client=client.async_httpx_client("anthropic", priority="normal", deadline=30.0))

    async def agent():
        async def one(i):
            message = await sdk.messages.create(
                model="claude-test", max_tokens=64, messages=[{"role": "user", "content": f"task {i}"}])
            return message.content[0].text

        return await asyncio.gather(*(one(i) for i in range(2 * LIMIT)))

    assert asyncio.run(agent()) == ["ok"] * (2 * LIMIT)
    assert upstream.rejected == 0
    assert upstream.max_in_one_window() <= LIMIT
    inputs = sum(u["input_tokens"] for u in upstream.usages)
    outputs = sum(u["output_tokens"] for u in upstream.usages)
    assert node.consumed("anthropic", "input_tokens") == inputs
    assert node.consumed("anthropic", "output_tokens") == outputs
    assert node.consumed("anthropic", "tokens") == inputs + outputs


def test_anthropic_stream_reports_its_usage(start_node, upstream_factory):
    upstream = upstream_factory(100, 60.0)
    node = start_node({"anthropic": {"limit": 100, "window": "30d",
                                     "limits": {"output_tokens": {"limit": 1_000_000, "window": "30d"}}}})
    client = Client(base_url=node.url)
    sdk = anthropic.Anthropic(base_url=upstream.url, api_key="test", max_retries=0,
                              http_client=client.httpx_client("anthropic", priority="urgent"))
    with sdk.messages.stream(model="claude-test", max_tokens=300, messages=[{"role": "user", "content": "hi"}]) as stream:
        assert stream.get_final_text() == "ok"
    assert node.consumed("anthropic", "output_tokens") == upstream.usages[0]["output_tokens"]


def test_past_its_deadline_the_sdk_gets_the_nodes_429_and_the_upstream_is_not_called(start_node, upstream_factory):
    upstream = upstream_factory(100, 60.0)
    node = start_node({"openai": {"limit": 1, "window": "30d"}})
    client = Client(base_url=node.url)
    sdk = openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="test",
                        http_client=client.httpx_client("openai", priority="urgent", deadline=0.5))
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "one"}], max_tokens=5)
    with pytest.raises(openai.RateLimitError) as error:
        sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "two"}], max_tokens=5)
    assert error.value.response.headers["x-quotamesh-reason"] == "quota_exhausted"
    assert "QuotaMesh" in str(error.value)
    assert len(upstream.requests) == 1
