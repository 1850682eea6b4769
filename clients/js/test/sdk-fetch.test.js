// `client.fetchFor(service)` as the openai and @anthropic-ai/sdk clients call their `fetch` option (the npm
// registry is out of reach here, so the SDKs' calls are made as they make them: a URL, and an init with the
// method, a headers object, a JSON string body and a signal; streams read from `response.body`), against
// a stand-in upstream with a real limit: no 429 reaches the agent, and usage is refunded.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { Client } from "../index.js";
import { startNode, startUpstream } from "./support.js";

const started = [];
after(async () => Promise.all(started.map((one) => one.stop())));
const track = (one) => { started.push(one); return one; };

/** One SDK call with its retries off: a non-2xx answer is an error, as the SDKs raise it. */
async function sdkCall(fetchFunction, url, body, { stream = false } = {}) {
  const response = await fetchFunction(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: stream ? "text/event-stream" : "application/json", authorization: "Bearer test" },
    body: JSON.stringify(body),
    signal: new AbortController().signal,
  });
  if (!response.ok) {
    const error = new Error(`${response.status} ${await response.text()}`);
    error.status = response.status;
    error.headers = response.headers;
    throw error;
  }
  if (!stream) return response.json();
  const events = [];
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of response.body) {
    pending += decoder.decode(chunk, { stream: true });
    const parts = pending.split("\n\n");
    pending = parts.pop();
    for (const part of parts) {
      const data = part.split("\n").find((line) => line.startsWith("data: "))?.slice(6);
      if (data && data !== "[DONE]") events.push(JSON.parse(data));
    }
  }
  return events;
}

// Windows of 30 days where a test counts what was consumed: no reset falls within it.
const counting = (service, dimensions) => ({
  [service]: { limit: 100, window: "30d", limits: Object.fromEntries(dimensions.map((d) => [d, { limit: 1_000_000, window: "30d" }])) },
});

test("openai-shaped calls at three times the limit: no 429 reaches the upstream or the agent", async () => {
  const upstream = track(await startUpstream(5, 2));
  const node = track(await startNode({ openai: { limit: 5, window: "2s" } }));
  const quotaFetch = new Client({ baseUrl: node.url }).fetchFor("openai", { priority: "normal", deadline: 30 });
  for (let i = 0; i < 15; i++) {
    const completion = await sdkCall(quotaFetch, `${upstream.url}/v1/chat/completions`,
      { model: "gpt-test", max_tokens: 50, messages: [{ role: "user", content: `question ${i}` }] });
    assert.equal(completion.choices[0].message.content, "ok");
  }
  assert.equal(upstream.rejected, 0);
  assert.equal(upstream.usages.length, 15);
  assert.ok(upstream.maxInOneWindow() <= 5);
});

test("openai usage is refunded with no code in the agent, streams included", async () => {
  const upstream = track(await startUpstream(100, 60));
  const node = track(await startNode(counting("openai", ["tokens"])));
  const quotaFetch = new Client({ baseUrl: node.url }).fetchFor("openai", { priority: "urgent" });
  await sdkCall(quotaFetch, `${upstream.url}/v1/chat/completions`, { model: "m", max_tokens: 500, messages: [{ role: "user", content: "hi ".repeat(50) }] });
  const events = await sdkCall(quotaFetch, `${upstream.url}/v1/chat/completions`,
    { model: "m", max_tokens: 400, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "stream" }] }, { stream: true });
  assert.equal(events.map((e) => e.choices[0]?.delta.content ?? "").join(""), "ok");
  const used = upstream.usages.reduce((sum, usage) => sum + usage.total_tokens, 0);
  assert.ok(used < 500);
  // The stream's report is sent when the stream ends; the node has it once the agent read the stream.
  assert.equal(await node.consumed("openai", "tokens"), used);
});

test("anthropic-shaped calls count input and output tokens apart, concurrently, streams included", async () => {
  const upstream = track(await startUpstream(5, 2));
  const node = track(await startNode({ anthropic: { limit: 5, window: "2s",
    limits: Object.fromEntries(["tokens", "input_tokens", "output_tokens"].map((d) => [d, { limit: 1_000_000, window: "30d" }])) } }));
  const quotaFetch = new Client({ baseUrl: node.url }).fetchFor("anthropic", { priority: "normal", deadline: 30 });
  const answers = await Promise.all(Array.from({ length: 9 }, (_, i) => sdkCall(quotaFetch, `${upstream.url}/v1/messages`,
    { model: "claude-test", max_tokens: 64, messages: [{ role: "user", content: `task ${i}` }] })));
  const events = await sdkCall(quotaFetch, `${upstream.url}/v1/messages`,
    { model: "claude-test", max_tokens: 300, stream: true, messages: [{ role: "user", content: "stream" }] }, { stream: true });
  assert.deepEqual(answers.map((a) => a.content[0].text), Array(9).fill("ok"));
  assert.equal(events.at(-1).type, "message_stop");
  assert.equal(upstream.rejected, 0);
  assert.ok(upstream.maxInOneWindow() <= 5);
  const inputs = upstream.usages.reduce((sum, u) => sum + u.input_tokens, 0);
  const outputs = upstream.usages.reduce((sum, u) => sum + u.output_tokens, 0);
  assert.equal(await node.consumed("anthropic", "input_tokens"), inputs);
  assert.equal(await node.consumed("anthropic", "output_tokens"), outputs);
  assert.equal(await node.consumed("anthropic", "tokens"), inputs + outputs);
});

test("past its deadline the SDK gets the node's 429, told not to retry, and the upstream is not called", async () => {
  const upstream = track(await startUpstream(100, 60));
  const node = track(await startNode({ openai: { limit: 1, window: "30d" } }));
  const quotaFetch = new Client({ baseUrl: node.url }).fetchFor("openai", { priority: "urgent", deadline: 0.5 });
  await sdkCall(quotaFetch, `${upstream.url}/v1/chat/completions`, { model: "m", max_tokens: 5, messages: [] });
  await assert.rejects(sdkCall(quotaFetch, `${upstream.url}/v1/chat/completions`, { model: "m", max_tokens: 5, messages: [] }), (error) => {
    assert.equal(error.status, 429);
    assert.equal(error.headers.get("x-quotamesh-reason"), "quota_exhausted");
    assert.equal(error.headers.get("x-should-retry"), "false");
    assert.match(error.message, /QuotaMesh/);
    return true;
  });
  assert.equal(upstream.requests.length, 1);
});
