"""A ten-line agent: the openai SDK, every call acquired from the QuotaMesh node beside it and reported."""
import openai
from quotamesh import Client

quota = Client()  # $QUOTAMESH_API, else http://127.0.0.1:9721
llm = openai.OpenAI(http_client=quota.httpx_client("openai", priority="normal", deadline=60))
for i in range(12):
    answer = llm.chat.completions.create(
        model="gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": f"Summarise item {i}"}])
    print(i, answer.choices[0].message.content, answer.usage.total_tokens)
used = {limit["name"]: limit["consumed"]["local"] for limit in quota.quota("openai")["limits"]}
print("tokens consumed by this node:", used["tokens"])
