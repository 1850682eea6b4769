// The client against a real node: grants, denials, reports, refunds, tokens, and errors.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { BadRequest, Client, NodeUnreachable, QuotaDenied, Unauthorized } from "../index.js";
import { startNode, startUpstream } from "./support.js";

// Windows of 30 days: no reset falls within a test that counts what was consumed.
const OPENAI = { openai: { limit: 100, window: "30d", limits: { tokens: { limit: 100000, window: "30d" } } } };
const started = [];
const node = async (services, options) => {
  const one = await startNode(services, options);
  started.push(one);
  return one;
};
after(async () => Promise.all(started.map((one) => one.stop())));

test("a grant reports its usage and the difference is refunded", async () => {
  const n = await node(OPENAI);
  const client = new Client({ baseUrl: n.url });
  const grant = await client.acquire("openai", { priority: "urgent", cost: { requests: 1, tokens: 1800 }, wait: 5 });
  assert.equal(grant.granted, true);
  assert.deepEqual(grant.cost, { requests: 1, tokens: 1800 });
  assert.equal(grant.account, "default");
  assert.equal(await n.consumed("openai", "tokens"), 1800);
  const answer = await grant.report(200, { "x-ratelimit-remaining-requests": "99" }, { tokens: 300 });
  assert.equal(answer.quota.service, "openai");
  assert.equal(await n.consumed("openai", "tokens"), 300);
  await assert.rejects(grant.report(200, {}), /already reported/);
});

test("a grant left unreported reports and refunds nothing", async () => {
  const n = await node(OPENAI);
  const client = new Client({ baseUrl: n.url });
  await client.withGrant("openai", { priority: "urgent", cost: { requests: 1, tokens: 900 }, wait: 5 }, async () => "done");
  assert.equal(await n.consumed("openai", "tokens"), 900);
});

test("withGrant reports the fetch Response its work returns, with the usage in its body", async () => {
  const upstream = await startUpstream(50, 60);
  const n = await node(OPENAI);
  const client = new Client({ baseUrl: n.url });
  const response = await client.withGrant("openai", { priority: "urgent", cost: { requests: 1, tokens: 500 }, wait: 5 },
    () => fetch(`${upstream.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }) }));
  assert.equal(response.status, 200);
  assert.equal((await response.json()).choices[0].message.content, "ok");
  assert.equal(await n.consumed("openai", "tokens"), upstream.usages[0].total_tokens);
  await upstream.stop();
});

test("a spent window is a denial with a reason and a time", async () => {
  const n = await node({ github: { limit: 2, window: "30d" } });
  const client = new Client({ baseUrl: n.url });
  for (let i = 0; i < 2; i++) await (await client.acquire("github", { priority: "urgent", wait: 5 })).report(200, {});
  const startedAt = Date.now();
  await assert.rejects(client.acquire("github", { priority: "urgent", wait: 0.5 }), (error) => {
    assert.ok(error instanceof QuotaDenied);
    assert.equal(error.reason, "quota_exhausted");
    assert.ok(error.detail);
    assert.ok(error.retryAfter > 0.5);
    return true;
  });
  assert.ok(Date.now() - startedAt < 5000);
});

test("an unknown service goes ahead and its report teaches the node", async () => {
  const n = await node({});
  const client = new Client({ baseUrl: n.url });
  const grant = await client.acquire("github", { wait: 1 });
  assert.equal(grant.ungated, true);
  assert.equal(grant.granted, false);
  await grant.report(200, new Headers({ "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990",
    "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600) }));
  assert.equal((await client.quota("github")).limit, 5000);
});

test("a misspelt priority and a bad cost are refused, naming the field", async () => {
  const n = await node(OPENAI);
  const client = new Client({ baseUrl: n.url });
  await assert.rejects(client.acquire("openai", { priority: "urgnet" }), (error) => error instanceof BadRequest && /priority/.test(error.message));
  await assert.rejects(client.acquire("openai", { cost: -1 }), (error) => error instanceof BadRequest && /cost/.test(error.message));
});

test("a node with a token needs it", async () => {
  const n = await node(OPENAI, { token: "s3cret-token-for-tests" });
  await assert.rejects(new Client({ baseUrl: n.url, token: "wrong" }).quota("openai"), Unauthorized);
  const grant = await new Client({ baseUrl: n.url, token: "s3cret-token-for-tests" }).acquire("openai", { priority: "urgent", wait: 5 });
  assert.equal(grant.granted, true);
});

test("no node is a clear error", async () => {
  await assert.rejects(new Client({ baseUrl: "http://127.0.0.1:9" }).quota(), (error) => error instanceof NodeUnreachable && /127\.0\.0\.1:9/.test(error.message));
});
