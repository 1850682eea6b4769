// The JavaScript client of a QuotaMesh node's local API (openapi.yaml at the repository's root): ESM,
// `fetch` only, no dependencies. Types in index.d.ts.

/** The longest one acquire may wait at the node, in seconds (the API's `wait_ms` limit). */
export const MAX_WAIT_SECONDS = 600;

/** What a request that names no `max_tokens` is assumed to generate at most. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** Characters per token assumed for a prompt: a little under the usual four, so that estimates err high. */
const CHARACTERS_PER_TOKEN = 3;

/** The shortest pause before asking again, whatever the node says (ms). */
const MIN_PAUSE_MS = 5;

/** The node refused a request (`status` is its HTTP status) or could not be asked (`status` is null). */
export class QuotaMeshError extends Error {
  constructor(message, status = null, answer = {}) {
    super(message);
    this.name = "QuotaMeshError";
    this.status = status;
    this.answer = answer;
  }
}

/** No node answered at the client's address. */
export class NodeUnreachable extends QuotaMeshError {
  constructor(message) {
    super(message);
    this.name = "NodeUnreachable";
  }
}

/** The node refused the request's body (400); the message names the field. */
export class BadRequest extends QuotaMeshError {
  constructor(message, status = 400, answer = {}) {
    super(message, status, answer);
    this.name = "BadRequest";
  }
}

/** The node has an API token and the client sent none or another (401). */
export class Unauthorized extends QuotaMeshError {
  constructor(message, status = 401, answer = {}) {
    super(message, status, answer);
    this.name = "Unauthorized";
  }
}

/** Not now: no grant within the wait allowed. `retryAfter` is in seconds. */
export class QuotaDenied extends QuotaMeshError {
  constructor(answer) {
    const reason = answer.reason ?? "quota_exhausted";
    const retryAfter = (answer.retry_after_ms ?? 0) / 1000;
    const detail = answer.detail ? ` (${answer.detail})` : "";
    super(`quota denied: ${reason}${detail}; ask again in ${retryAfter.toFixed(3)} s`, 429, answer);
    this.name = "QuotaDenied";
    this.reason = reason;
    this.detail = answer.detail ?? null;
    this.retryAfter = retryAfter;
    this.retryAt = (answer.retry_at_ms ?? 0) / 1000;
    this.account = answer.account ?? null;
    this.quota = answer.quota ?? null;
  }
}

/** Response headers as `observe` takes them: lower-case names, a list where a name repeats. */
export function headerObject(headers) {
  const result = {};
  if (!headers) return result;
  const add = (name, value) => {
    const key = String(name).toLowerCase();
    const text = String(value);
    if (!(key in result)) result[key] = text;
    else if (Array.isArray(result[key])) result[key].push(text);
    else result[key] = [result[key], text];
  };
  if (Array.isArray(headers)) {
    for (const [name, value] of headers) add(name, value);
  } else if (typeof headers.forEach === "function" && typeof headers.get === "function") {
    // A fetch Headers (or a Map): it joins repeated values but `set-cookie`; rate-limit headers do not repeat.
    headers.forEach((value, name) => add(name, value));
  } else {
    for (const [name, value] of Object.entries(headers)) {
      for (const one of Array.isArray(value) ? value : [value]) add(name, one);
    }
  }
  return result;
}

// MARK: - Costs and usage

/** Which API a request path belongs to: "anthropic", "openai" or null (counted in requests only). */
export function flavor(path) {
  if (path.endsWith("/messages")) return "anthropic";
  if (/\/(chat\/completions|completions|responses|embeddings)$/.test(path)) return "openai";
  return null;
}

function textLength(value) {
  if (typeof value === "string") return value.length;
  if (Array.isArray(value)) return value.reduce((sum, item) => sum + textLength(item), 0);
  if (value && typeof value === "object") {
    let sum = 0;
    for (const [key, item] of Object.entries(value)) {
      if (key !== "role" && key !== "type" && key !== "model") sum += textLength(item);
    }
    return sum;
  }
  return 0;
}

/** The cost to acquire for a request: one request, and for an LLM call its tokens, estimated high. */
export function estimateCost(path, body, defaultMaxOutput = DEFAULT_MAX_OUTPUT_TOKENS) {
  const kind = flavor(path);
  if (kind === null || !body) return { requests: 1 };
  let payload;
  try {
    payload = JSON.parse(body);
  } catch {
    return { requests: 1 };
  }
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) return { requests: 1 };
  const parts = ["messages", "prompt", "input", "system", "instructions", "tools"].map((key) => payload[key]);
  const prompt = Math.ceil(parts.reduce((sum, part) => sum + textLength(part), 0) / CHARACTERS_PER_TOKEN);
  if (path.endsWith("/embeddings")) return { requests: 1, tokens: Math.max(1, prompt) };
  let output = defaultMaxOutput;
  for (const key of ["max_tokens", "max_completion_tokens", "max_output_tokens"]) {
    if (Number.isInteger(payload[key]) && payload[key] > 0) {
      output = payload[key];
      break;
    }
  }
  if (Number.isInteger(payload.n) && payload.n > 1) output *= payload.n;
  if (kind === "anthropic") {
    return { requests: 1, tokens: prompt + output, input_tokens: Math.max(1, prompt), output_tokens: output };
  }
  return { requests: 1, tokens: Math.max(1, prompt + output) };
}

/** A usage block (OpenAI's, Anthropic's, or dimensions already) in the node's dimensions. */
export function usageDimensions(usage) {
  if (!usage || typeof usage !== "object") return {};
  const numbers = {};
  for (const [key, value] of Object.entries(usage)) {
    if (Number.isInteger(value) && value >= 0) numbers[key] = value;
  }
  if ("prompt_tokens" in numbers || "completion_tokens" in numbers) {
    return { tokens: numbers.total_tokens ?? (numbers.prompt_tokens ?? 0) + (numbers.completion_tokens ?? 0) };
  }
  if ("input_tokens" in numbers || "output_tokens" in numbers) {
    if ("total_tokens" in numbers) return { tokens: numbers.total_tokens };
    const input = (numbers.input_tokens ?? 0) + (numbers.cache_creation_input_tokens ?? 0);
    const output = numbers.output_tokens ?? 0;
    return { tokens: input + output, input_tokens: input, output_tokens: output };
  }
  if ("total_tokens" in numbers) return { tokens: numbers.total_tokens };
  delete numbers.requests;
  return numbers;
}

/** Collects the usage a server-sent event stream states as it passes (OpenAI's last chunk, Anthropic's
 * `message_start` and `message_delta`). */
export class StreamUsage {
  #pending = "";
  #usage = {};
  #decoder = new TextDecoder();

  feed(chunk) {
    this.#pending += this.#decoder.decode(chunk, { stream: true });
    const lines = this.#pending.split("\n");
    this.#pending = lines.pop();
    this.#read(lines);
  }

  finish() {
    this.#read([this.#pending]);
    this.#pending = "";
    return Object.keys(this.#usage).length ? usageDimensions(this.#usage) : {};
  }

  #read(lines) {
    for (const raw of lines) {
      const line = raw.trim();
      if (!line.startsWith("data:")) continue;
      let event;
      try {
        event = JSON.parse(line.slice(5).trim());
      } catch {
        continue;
      }
      if (!event || typeof event !== "object") continue;
      if (event.message && typeof event.message.usage === "object") Object.assign(this.#usage, event.message.usage);
      if (event.usage && typeof event.usage === "object") {
        for (const [key, value] of Object.entries(event.usage)) if (value !== null) this.#usage[key] = value;
      }
    }
  }
}

// MARK: - Grants

/** What the node granted: the account to call with and the cost charged. `ungated` when the node knew
 * nothing of the service: the call goes ahead, and its report teaches the node. */
export class Grant {
  #client;

  constructor(client, service, answer, ungated = false) {
    this.#client = client;
    this.service = service;
    this.answer = answer;
    this.ungated = ungated;
    this.granted = !ungated;
    this.account = answer.account ?? null;
    this.cost = ungated ? {} : { ...(answer.cost ?? {}) };
    this.detail = answer.detail ?? null;
    this.windowEndMs = answer.window_end_ms ?? null;
    this.quota = answer.quota ?? null;
    this.reported = false;
  }

  /** Reports the upstream's response: status, every header, and what it used (refunding the estimate).
   * Returns the node's answer. */
  async report(status, headers = {}, usage = null) {
    if (this.reported) throw new QuotaMeshError(`this grant of ${this.service} was already reported`);
    this.reported = true;
    const body = { service: this.service, status, headers: headerObject(headers) };
    if (this.account !== null && !this.ungated) body.account = this.account;
    const dimensions = usageDimensions(usage);
    if (Object.keys(dimensions).length) {
      body.usage = dimensions;
      const reserved = Object.fromEntries(Object.entries(this.cost).filter(([key]) => key !== "requests"));
      if (Object.keys(reserved).length) body.cost = reserved;
    }
    return (await this.#client._request("POST", "/v1/observe", body)).answer;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function defaultBaseUrl() {
  const address = (globalThis.process?.env?.QUOTAMESH_API ?? "").trim();
  if (!address) return "http://127.0.0.1:9721";
  return address.includes("://") ? address : `http://${address}`;
}

/** The node's refusal as the 429 an SDK understands; `x-should-retry: false` keeps the SDK from retrying
 * on its own (the deadline already passed). */
export function denialResponse(denial) {
  const body = {
    type: "error",
    error: { type: "rate_limit_error", code: `quotamesh_${denial.reason}`, message: `QuotaMesh: ${denial.message}` },
  };
  const headers = {
    "content-type": "application/json",
    "retry-after": String(Math.max(1, Math.ceil(denial.retryAfter))),
    "retry-after-ms": String(Math.round(denial.retryAfter * 1000)),
    "x-should-retry": "false",
    "x-quotamesh-reason": denial.reason,
  };
  if (denial.detail) headers["x-quotamesh-detail"] = denial.detail;
  return new Response(JSON.stringify(body), { status: 429, headers });
}

// MARK: - The client

/** A QuotaMesh node's local API. `baseUrl` defaults to `$QUOTAMESH_API`, else http://127.0.0.1:9721. */
export class Client {
  #fetch;
  #headers;

  constructor({ baseUrl = null, token = null, fetch: baseFetch = globalThis.fetch } = {}) {
    this.baseUrl = (baseUrl ?? defaultBaseUrl()).replace(/\/+$/, "");
    this.#fetch = baseFetch;
    this.#headers = { "content-type": "application/json" };
    if (token) this.#headers.authorization = `Bearer ${token}`;
  }

  /** Asks for one call of `service` and resolves to a Grant, waiting up to `wait` seconds for one;
   * rejects with QuotaDenied when none comes in time. `cost` is requests or an object by dimension. */
  async acquire(service, { priority = "normal", cost = 1, wait = 0 } = {}) {
    if (!["urgent", "normal", "low"].includes(priority)) {
      throw new BadRequest(`priority must be urgent, normal or low, not ${JSON.stringify(priority)}`);
    }
    const deadline = Date.now() + Math.max(0, wait) * 1000;
    for (;;) {
      const left = Math.max(0, deadline - Date.now());
      const { status, answer } = await this._request("POST", "/v1/acquire", {
        service, priority, cost, wait_ms: Math.floor(Math.min(left, MAX_WAIT_SECONDS * 1000)),
      }, true);
      if (status === 200) return new Grant(this, service, answer);
      if (answer.reason === "unknown_service") return new Grant(this, service, answer, true);
      const pause = Math.max(MIN_PAUSE_MS, answer.retry_after_ms ?? 0);
      if (Date.now() + pause > deadline) throw new QuotaDenied(answer);
      await sleep(pause);
    }
  }

  /** Acquires, runs `work(grant)`, and returns what it returns; the grant is reported only if `work`
   * reports it (or returns a fetch Response, which is reported with the usage in its JSON body). */
  async withGrant(service, options, work) {
    const grant = await this.acquire(service, options);
    const result = await work(grant);
    if (!grant.reported && result instanceof Response) {
      let usage = null;
      try {
        usage = (await result.clone().json())?.usage ?? null;
      } catch {
        usage = null;
      }
      await grant.report(result.status, result.headers, usage);
    }
    return result;
  }

  /** Reports an upstream response that no grant covers. */
  async observe(service, status, headers = {}, { account = null, usage = null, cost = null } = {}) {
    const body = { service, status, headers: headerObject(headers) };
    if (account !== null) body.account = account;
    const dimensions = usageDimensions(usage);
    if (Object.keys(dimensions).length) body.usage = dimensions;
    if (cost) body.cost = cost;
    return (await this._request("POST", "/v1/observe", body)).answer;
  }

  /** The merged view of one service, or of every key. */
  async quota(service = null) {
    return (await this._request("GET", service ? `/v1/quota/${encodeURIComponent(service)}` : "/v1/quota")).answer;
  }

  async health() {
    return (await this._request("GET", "/healthz")).answer;
  }

  async peers() {
    return (await this._request("GET", "/v1/peers")).answer;
  }

  /** A function with fetch's signature, for the `fetch` option of `new OpenAI({...})` or
   * `new Anthropic({...})`: each request acquires first (tokens estimated from the prompt and
   * `max_tokens`), waits up to `deadline` seconds when the node says not now, and is reported after with
   * the usage it states (a stream's when it ends). Past the deadline it answers the node's 429. */
  fetchFor(service, { priority = "normal", deadline = 60, fetch: upstreamFetch = globalThis.fetch,
    defaultMaxOutputTokens = DEFAULT_MAX_OUTPUT_TOKENS } = {}) {
    return async (input, init = undefined) => {
      const url = new URL(typeof input === "string" || input instanceof URL ? String(input) : input.url);
      let body = init?.body;
      if (body === undefined && input instanceof Request) body = await input.clone().text();
      const cost = estimateCost(url.pathname, typeof body === "string" ? body : null, defaultMaxOutputTokens);
      let grant;
      try {
        grant = await this.acquire(service, { priority, cost, wait: deadline });
      } catch (error) {
        if (error instanceof QuotaDenied) return denialResponse(error);
        throw error;
      }
      const response = await upstreamFetch(input, init);
      const report = async (usage) => {
        const refund = Object.keys(usage).length || response.status < 400
          ? usage
          : Object.fromEntries(Object.keys(grant.cost).filter((k) => k !== "requests").map((k) => [k, 0]));
        try {
          await grant.report(response.status, response.headers, refund);
        } catch (error) {
          console.warn(`quotamesh: could not report a response of ${service}: ${error.message}`);
        }
      };
      const headers = new Headers(response.headers);
      headers.delete("content-encoding"); // fetch decoded the body already
      headers.delete("content-length");
      if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream") && response.body) {
        const usage = new StreamUsage();
        let reported = false;
        const once = async () => {
          if (!reported) {
            reported = true;
            await report(usage.finish());
          }
        };
        const reader = response.body.getReader();
        const stream = new ReadableStream({
          async pull(controller) {
            const { done, value } = await reader.read();
            if (done) {
              await once();
              controller.close();
              return;
            }
            usage.feed(value);
            controller.enqueue(value);
          },
          async cancel(reason) {
            await reader.cancel(reason);
            await once();
          },
        });
        return new Response(stream, { status: response.status, statusText: response.statusText, headers });
      }
      const buffer = await response.arrayBuffer();
      let usage = {};
      try {
        usage = usageDimensions(JSON.parse(new TextDecoder().decode(buffer))?.usage);
      } catch {
        usage = {};
      }
      await report(usage);
      const empty = buffer.byteLength === 0 || [101, 204, 205, 304].includes(response.status);
      return new Response(empty ? null : buffer, { status: response.status, statusText: response.statusText, headers });
    };
  }

  /** One request to the node: its status and JSON answer; a 429 is an answer only where `denialOk`. */
  async _request(method, path, body = undefined, denialOk = false) {
    let response;
    try {
      response = await this.#fetch(`${this.baseUrl}${path}`, {
        method, headers: this.#headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new NodeUnreachable(`no QuotaMesh node answered at ${this.baseUrl}: ${error.cause?.message ?? error.message}`);
    }
    const text = await response.text();
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = { error: text };
    }
    if (!answer || typeof answer !== "object") answer = { error: String(answer) };
    const status = response.status;
    if (status === 200 || (status === 429 && denialOk)) return { status, answer };
    const message = answer.error ?? `HTTP ${status}`;
    if (status === 400) throw new BadRequest(message, status, answer);
    if (status === 401) throw new Unauthorized(message, status, answer);
    throw new QuotaMeshError(message, status, answer);
  }
}
