// A ten-line agent: every chat completion acquired from the QuotaMesh node beside it and reported.
import { Client } from "quotamesh";

const quota = new Client(); // $QUOTAMESH_API, else http://127.0.0.1:9721
const llmFetch = quota.fetchFor("openai", { priority: "normal", deadline: 60 }); // or: new OpenAI({ fetch: llmFetch })
for (let i = 0; i < 12; i++) {
  const response = await llmFetch(`${process.env.OPENAI_BASE_URL}/chat/completions`, { method: "POST",
    headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 100, messages: [{ role: "user", content: `Summarise item ${i}` }] }) });
  const answer = await response.json();
  console.log(i, answer.choices[0].message.content, answer.usage.total_tokens);
}
console.log("tokens consumed by this node:", (await quota.quota("openai")).limits.find((l) => l.name === "tokens").consumed.local);
