// Types of the QuotaMesh JavaScript client (index.js). The answers' fields are openapi.yaml's.

export type Priority = "urgent" | "normal" | "low";
/** Requests, or a cost by dimension: `{ requests: 1, tokens: 1800 }`. */
export type Cost = number | Record<string, number>;
export type HeadersLike = Headers | Record<string, string | string[]> | Array<[string, string]>;
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export const MAX_WAIT_SECONDS: number;
export const DEFAULT_MAX_OUTPUT_TOKENS: number;

/** Q, the merged view of one quota key (openapi.yaml, `Quota`). */
export interface Quota {
  service: string;
  account: string;
  dimension: string;
  limit: number | null;
  window_s: number | null;
  remaining: number | null;
  reset_at: number | null;
  reset_at_ms: number | null;
  limits: Array<{
    name: string;
    limit: number | null;
    remaining: number | null;
    reset_at: number | null;
    window_s: number | null;
    consumed: { global: number; local: number };
  }>;
  next_available: Record<Priority, number>;
  consumed: { global: number; local: number };
  breaker: { state: "closed" | "open" | "half_open"; open_until: number | null };
  peers: { live: number; known: number };
  share: number;
  rights: number | null;
  observed: { remaining: number; limit: number; reset_at: number; observed_at: number } | null;
}

export interface ServiceQuota extends Quota {
  accounts: Quota[];
  scopes?: Array<Quota & { scope: string }>;
}

export interface ObserveAnswer {
  understood: string[];
  ignored: Array<{ header: string; reason: string }>;
  breaker_opened: boolean;
  breaker_closed: boolean;
  quota: Quota | null;
  message?: string;
}

export class QuotaMeshError extends Error {
  /** The node's HTTP status, or null when it could not be asked. */
  status: number | null;
  answer: Record<string, unknown>;
}
export class NodeUnreachable extends QuotaMeshError {}
export class BadRequest extends QuotaMeshError {}
export class Unauthorized extends QuotaMeshError {}
export class QuotaDenied extends QuotaMeshError {
  reason: "quota_exhausted" | "reserved_for_higher_priority" | "breaker_open" | "unknown_service";
  detail: string | null;
  /** Seconds until asking again may succeed. */
  retryAfter: number;
  /** The same moment, in Unix seconds. */
  retryAt: number;
  account: string | null;
  quota: Quota | null;
}

export class Grant {
  readonly service: string;
  /** False only when `ungated`: the node knew nothing of the service, and the report teaches it. */
  readonly granted: boolean;
  readonly ungated: boolean;
  readonly account: string | null;
  readonly cost: Record<string, number>;
  readonly detail: string | null;
  readonly windowEndMs: number | null;
  readonly quota: Quota | null;
  readonly answer: Record<string, unknown>;
  reported: boolean;
  /** Reports the upstream's response with what it used (`usage`: dimensions, or an API's usage block). */
  report(status: number, headers?: HeadersLike, usage?: Record<string, unknown> | null): Promise<ObserveAnswer>;
}

export interface AcquireOptions {
  priority?: Priority;
  cost?: Cost;
  /** Seconds the call may wait for a grant. */
  wait?: number;
}

export interface FetchForOptions {
  priority?: Priority;
  /** Seconds a request may wait for a grant before it is answered the node's 429. */
  deadline?: number;
  /** The fetch that reaches the upstream (globalThis.fetch by default). */
  fetch?: FetchFunction;
  defaultMaxOutputTokens?: number;
}

export class Client {
  constructor(options?: { baseUrl?: string | null; token?: string | null; fetch?: FetchFunction });
  readonly baseUrl: string;
  acquire(service: string, options?: AcquireOptions): Promise<Grant>;
  withGrant<T>(service: string, options: AcquireOptions, work: (grant: Grant) => Promise<T>): Promise<T>;
  observe(service: string, status: number, headers?: HeadersLike,
    options?: { account?: string | null; usage?: Record<string, unknown> | null; cost?: Record<string, number> | null }): Promise<ObserveAnswer>;
  quota(): Promise<{ quotas: Quota[] }>;
  quota(service: string): Promise<ServiceQuota>;
  health(): Promise<Record<string, unknown>>;
  peers(): Promise<Record<string, unknown>>;
  /** For `new OpenAI({ fetch })` or `new Anthropic({ fetch })`: every request acquired and reported. */
  fetchFor(service: string, options?: FetchForOptions): FetchFunction;
}

export function headerObject(headers: HeadersLike | null | undefined): Record<string, string | string[]>;
export function flavor(path: string): "openai" | "anthropic" | null;
export function estimateCost(path: string, body: string | null, defaultMaxOutput?: number): Record<string, number>;
export function usageDimensions(usage: unknown): Record<string, number>;
export function denialResponse(denial: QuotaDenied): Response;
export class StreamUsage {
  feed(chunk: Uint8Array): void;
  finish(): Record<string, number>;
}
