"""QuotaMesh for Python agents: ask the node beside the agent before each upstream call, report after it.

    from quotamesh import Client

    client = Client()  # $QUOTAMESH_API or http://127.0.0.1:9721
    with client.acquire("openai", priority="urgent", cost={"requests": 1, "tokens": 1800}, wait=30.0) as grant:
        response = httpx.post(...)
        grant.report(response.status_code, response.headers, usage={"tokens": 1234})

    openai.OpenAI(http_client=client.httpx_client("openai"))  # every request acquired and reported
"""
from ._client import Acquisition, AsyncGrant, Client, Grant, Priority
from ._errors import BadRequest, NodeUnreachable, QuotaDenied, QuotaMeshError, Unauthorized
from ._transport import AsyncQuotaTransport, QuotaTransport
from ._usage import estimate_cost, usage_dimensions

__version__ = "0.9.0"

__all__ = [
    "Acquisition",
    "AsyncGrant",
    "AsyncQuotaTransport",
    "BadRequest",
    "Client",
    "Grant",
    "NodeUnreachable",
    "Priority",
    "QuotaDenied",
    "QuotaMeshError",
    "QuotaTransport",
    "Unauthorized",
    "estimate_cost",
    "usage_dimensions",
]
