// Type-checked in CI against index.d.ts (`tsc --noEmit`): the client as a TypeScript agent uses it.
import { Client, QuotaDenied, type Grant, type ServiceQuota } from "quotamesh";

export async function agent(): Promise<number> {
  const quota = new Client({ baseUrl: "http://127.0.0.1:9721", token: null });
  const fetchForOpenAI: (input: string | URL | Request, init?: RequestInit) => Promise<Response> =
    quota.fetchFor("openai", { priority: "urgent", deadline: 30 });
  try {
    const grant: Grant = await quota.acquire("github", { priority: "low", cost: { requests: 1 }, wait: 10 });
    const response = await fetchForOpenAI("https://api.github.com/rate_limit");
    await grant.report(response.status, response.headers, null);
  } catch (error) {
    if (error instanceof QuotaDenied) return error.retryAfter;
    throw error;
  }
  const view: ServiceQuota = await quota.quota("openai");
  return view.remaining ?? 0;
}
