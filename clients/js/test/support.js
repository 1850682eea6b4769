// Test support: a real `quotamesh run` process on loopback (its binary from $QUOTAMESH_BINARY, else the
// repository's debug build), and a stand-in for the OpenAI and Anthropic APIs with a real limit.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repository = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export const COMPLETION_TOKENS = 7;

async function freeTcpPort() {
  const server = createNetServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

async function freeUdpPort() {
  const socket = createSocket("udp4");
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  const { port } = socket.address();
  socket.close();
  return port;
}

/** One node process with its own folder, stopped by its process id. */
export async function startNode(services, { token = null } = {}) {
  // Absolute: each node runs in a folder of its own.
  const binary = resolve(process.env.QUOTAMESH_BINARY ?? join(repository, ".build", "debug", "quotamesh"));
  if (!existsSync(binary)) {
    throw new Error(`no quotamesh binary at ${binary}: run \`swift build --product quotamesh\` or set QUOTAMESH_BINARY`);
  }
  const folder = mkdtempSync(join(tmpdir(), "quotamesh-js-"));
  mkdirSync(join(folder, "Peers"));
  writeFileSync(join(folder, "config.json"), JSON.stringify({ services }));
  const api = `127.0.0.1:${await freeTcpPort()}`;
  const args = ["run", "--config", join(folder, "config.json"), "--identity", join(folder, "identity"),
    "--peers", join(folder, "Peers"), "--state", join(folder, "state"),
    "--gossip", `127.0.0.1:${await freeUdpPort()}`, "--api", api];
  if (token) {
    writeFileSync(join(folder, "api-token"), token);
    chmodSync(join(folder, "api-token"), 0o600);
    args.push("--api-token-file", join(folder, "api-token"));
  }
  const log = openSync(join(folder, "node.log"), "w");
  const child = spawn(binary, args, { cwd: folder, stdio: ["ignore", log, log] });
  let exited = null;
  child.on("exit", (code, signal) => { exited = code ?? signal; });
  const url = `http://${api}`;
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const node = {
    api, url, folder, pid: child.pid,
    log: () => readFileSync(join(folder, "node.log"), "utf8").slice(-2000),
    async quota(service) {
      return (await fetch(`${url}/v1/quota/${service}`, { headers })).json();
    },
    /** What this node's agents consumed of `dimension` in the current window. */
    async consumed(service, dimension) {
      const quota = await node.quota(service);
      const entry = quota.limits.find((limit) => limit.name === dimension);
      if (!entry) throw new Error(`${service} has no ${dimension} dimension: ${JSON.stringify(quota)}`);
      return entry.consumed.local;
    },
    async stop() {
      if (exited === null) {
        const gone = once(child, "exit");
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await gone;
        clearTimeout(timer);
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`the node exited with ${exited}: ${node.log()}`);
    try {
      if ((await fetch(`${url}/healthz`, { headers })).status === 200) return node;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await node.stop();
  throw new Error(`the node did not serve within 30 s`);
}

function promptTokens(payload) {
  return Math.max(1, Math.ceil(JSON.stringify(payload.messages ?? payload.prompt ?? "").length / 4));
}

/** `limit` calls per `window` seconds, windows aligned to the epoch as the node aligns its own. */
export async function startUpstream(limit, window) {
  const upstream = { limit, window, sent: new Map(), rejected: 0, usages: [], requests: [] };
  const server = createServer(async (request, response) => {
    let text = "";
    for await (const chunk of request) text += chunk;
    const payload = text ? JSON.parse(text) : {};
    upstream.requests.push({ path: request.url, payload });
    const now = Date.now() / 1000;
    const index = Math.floor(now / window);
    const resetAt = (index + 1) * window;
    const used = upstream.sent.get(index) ?? 0;
    const allowed = used < limit;
    if (allowed) upstream.sent.set(index, used + 1);
    const remaining = Math.max(0, limit - (allowed ? used + 1 : used));
    const anthropic = request.url.endsWith("/messages");
    const headers = anthropic
      ? { "anthropic-ratelimit-requests-limit": String(limit), "anthropic-ratelimit-requests-remaining": String(remaining),
        "anthropic-ratelimit-requests-reset": new Date(Math.ceil(resetAt) * 1000).toISOString().replace(/\.\d+Z$/, "Z") }
      : { "x-ratelimit-limit-requests": String(limit), "x-ratelimit-remaining-requests": String(remaining),
        "x-ratelimit-reset-requests": `${Math.max(0.001, resetAt - now).toFixed(3)}s` };
    if (!allowed) {
      upstream.rejected += 1;
      headers["retry-after"] = String(Math.max(1, Math.ceil(resetAt - now)));
      response.writeHead(429, { ...headers, "content-type": "application/json" });
      response.end(JSON.stringify({ type: "error", error: { type: "rate_limit_error", message: "over the limit" } }));
      return;
    }
    const prompt = promptTokens(payload);
    const completion = Math.min(COMPLETION_TOKENS, payload.max_tokens ?? COMPLETION_TOKENS);
    if (anthropic) {
      const usage = { input_tokens: prompt, output_tokens: completion };
      upstream.usages.push(usage);
      if (payload.stream) {
        const events = [
          { type: "message_start", message: { id: "msg_1", type: "message", role: "assistant", content: [], usage: { input_tokens: prompt, output_tokens: 1 } } },
          { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "ok" } },
          { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: completion } },
          { type: "message_stop" }];
        response.writeHead(200, { ...headers, "content-type": "text/event-stream" });
        response.end(events.map((event) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`).join(""));
        return;
      }
      response.writeHead(200, { ...headers, "content-type": "application/json" });
      response.end(JSON.stringify({ id: "msg_1", type: "message", role: "assistant", content: [{ type: "text", text: "ok" }], stop_reason: "end_turn", usage }));
      return;
    }
    const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    upstream.usages.push(usage);
    if (payload.stream) {
      const chunk = { id: "chatcmpl-1", object: "chat.completion.chunk" };
      const events = [{ ...chunk, choices: [{ index: 0, delta: { content: "ok" }, finish_reason: null }] },
        { ...chunk, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }];
      if (payload.stream_options?.include_usage) events.push({ ...chunk, choices: [], usage });
      response.writeHead(200, { ...headers, "content-type": "text/event-stream" });
      // In pieces, as a real stream arrives: the usage event is split across writes.
      const text = events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join("") + "data: [DONE]\n\n";
      const middle = Math.floor(text.length / 2) + 3;
      response.write(text.slice(0, middle));
      setTimeout(() => response.end(text.slice(middle)), 20);
      return;
    }
    response.writeHead(200, { ...headers, "content-type": "application/json" });
    response.end(JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }], usage }));
  });
  server.keepAliveTimeout = 1000;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  upstream.url = `http://127.0.0.1:${server.address().port}`;
  upstream.maxInOneWindow = () => Math.max(0, ...upstream.sent.values());
  upstream.stop = async () => {
    server.closeAllConnections();
    server.close();
  };
  return upstream;
}
