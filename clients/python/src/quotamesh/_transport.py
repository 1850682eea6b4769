"""httpx transports that put every request of an SDK (openai, anthropic, or any httpx user) through the node:
acquire first, then the request, then its report with the usage it states.

The same transports are built for `httpx` and for its successor `httpx2` (which anthropic 2 and openai 3
use, and which anthropic insists on): each library's clients take only its own transports and responses.
"""
from __future__ import annotations

import logging
import functools
import math
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator, List, Optional

import httpx

from ._client import AsyncGrant, Grant, _GrantBase
from ._errors import QuotaDenied
from ._usage import DEFAULT_MAX_OUTPUT_TOKENS, Costs, StreamUsage, estimate_cost, usage_from_json

if TYPE_CHECKING:
    from ._client import Client

logger = logging.getLogger("quotamesh")


def denial_response(request: httpx.Request, denial: QuotaDenied, library: ModuleType = httpx) -> httpx.Response:
    """The node's refusal as the 429 an SDK understands: `retry-after` says when, `x-should-retry: false`
    tells openai's and anthropic's clients not to retry on their own (the deadline already passed), and the
    body is an error both SDKs parse, naming the node's reason."""
    body = {
        "type": "error",
        "error": {"type": "rate_limit_error", "code": f"quotamesh_{denial.reason}", "message": f"QuotaMesh: {denial}"},
    }
    headers = {
        "retry-after": str(max(1, math.ceil(denial.retry_after))),
        "retry-after-ms": str(int(denial.retry_after * 1000)),
        "x-should-retry": "false",
        "x-quotamesh-reason": denial.reason,
    }
    if denial.detail:
        headers["x-quotamesh-detail"] = denial.detail
    return library.Response(429, headers=headers, json=body, request=request)


def _usage_to_report(grant: _GrantBase, status: int, usage: Costs) -> Costs:
    """What to report as used: the answer's usage; for a failed call that states none, nothing in each
    reserved dimension (a refused call used no tokens); else none, and the estimate stands."""
    if usage:
        return usage
    if status >= 400:
        return {k: 0 for k in grant.cost if k != "requests"}
    return {}


def _is_event_stream(response: Any) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


class _Settings:
    def __init__(self, client: "Client", service: str, priority: str, deadline: float,
                 default_max_output_tokens: Optional[int]):
        self.client = client
        self.service = service
        self.priority = priority
        self.deadline = max(0.0, float(deadline))
        self.max_output = default_max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS


@functools.lru_cache(maxsize=None)
def transports(library: ModuleType) -> Any:
    """`(QuotaTransport, AsyncQuotaTransport)` for `library` (the module `httpx` or `httpx2`)."""

    class _ReportingStream(library.SyncByteStream):
        """An event stream passed through as it comes; its usage is reported when it is closed."""

        def __init__(self, inner: Any, encoded: bool, report: Callable[[Costs], None]):
            self._inner = inner
            self._usage = StreamUsage()
            self._encoded = encoded
            self._report: Optional[Callable[[Costs], None]] = report

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if not self._encoded:
                    self._usage.feed(chunk)
                yield chunk

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                report, self._report = self._report, None
                if report is not None:
                    report(self._usage.finish())

    class _AsyncReportingStream(library.AsyncByteStream):
        """As :class:`_ReportingStream`, for asyncio."""

        def __init__(self, inner: Any, encoded: bool, report: Callable[[Costs], Awaitable[None]]):
            self._inner = inner
            self._usage = StreamUsage()
            self._encoded = encoded
            self._report: Optional[Callable[[Costs], Awaitable[None]]] = report

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._inner:
                if not self._encoded:
                    self._usage.feed(chunk)
                yield chunk

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                report, self._report = self._report, None
                if report is not None:
                    await report(self._usage.finish())

    class QuotaTransport(library.BaseTransport):
        """Acquires each request from the node (waiting up to `deadline` seconds), sends it, and reports it."""

        def __init__(self, client: "Client", service: str, priority: str = "normal", deadline: float = 60.0,
                     transport: Optional[Any] = None, default_max_output_tokens: Optional[int] = None):
            self._settings = _Settings(client, service, priority, deadline, default_max_output_tokens)
            self._inner = transport or library.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            s = self._settings
            cost = estimate_cost(request.url.path, request.read(), s.max_output)
            try:
                grant = s.client._acquire(s.service, s.priority, cost, s.deadline, Grant)  # type: ignore[arg-type]
            except QuotaDenied as denial:
                return denial_response(request, denial, library)
            response = self._inner.handle_request(request)
            status = response.status_code

            def report(usage: Costs) -> None:
                try:
                    grant.report(status, response.headers, _usage_to_report(grant, status, usage))
                except Exception as error:  # the call itself succeeded: a failed report must not fail it
                    logger.warning("quotamesh: could not report a response of %s: %s", s.service, error)

            if _is_event_stream(response):
                encoded = "content-encoding" in response.headers
                stream = _ReportingStream(response.stream, encoded, report)  # type: ignore[arg-type]
                return library.Response(status, headers=response.headers, stream=stream,
                                      extensions=response.extensions, request=request)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
            decoded = library.Response(status, headers=response.headers, content=raw).content
            report(usage_from_json(decoded))
            return library.Response(status, headers=response.headers, stream=library.ByteStream(raw),
                                  extensions=response.extensions, request=request)

        def close(self) -> None:
            self._inner.close()

    class AsyncQuotaTransport(library.AsyncBaseTransport):
        """As :class:`QuotaTransport`, for `library.AsyncClient`."""

        def __init__(self, client: "Client", service: str, priority: str = "normal", deadline: float = 60.0,
                     transport: Optional[Any] = None, default_max_output_tokens: Optional[int] = None):
            self._settings = _Settings(client, service, priority, deadline, default_max_output_tokens)
            self._inner = transport or library.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            s = self._settings
            cost = estimate_cost(request.url.path, await request.aread(), s.max_output)
            try:
                grant = await s.client._acquire_async(s.service, s.priority, cost, s.deadline)  # type: ignore[arg-type]
            except QuotaDenied as denial:
                return denial_response(request, denial, library)
            response = await self._inner.handle_async_request(request)
            status = response.status_code

            async def report(usage: Costs) -> None:
                try:
                    await grant.report(status, response.headers, _usage_to_report(grant, status, usage))
                except Exception as error:
                    logger.warning("quotamesh: could not report a response of %s: %s", s.service, error)

            if _is_event_stream(response):
                encoded = "content-encoding" in response.headers
                stream = _AsyncReportingStream(response.stream, encoded, report)  # type: ignore[arg-type]
                return library.Response(status, headers=response.headers, stream=stream,
                                      extensions=response.extensions, request=request)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            decoded = library.Response(status, headers=response.headers, content=raw).content
            await report(usage_from_json(decoded))
            return library.Response(status, headers=response.headers, stream=library.ByteStream(raw),
                                  extensions=response.extensions, request=request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return QuotaTransport, AsyncQuotaTransport


QuotaTransport, AsyncQuotaTransport = transports(httpx)


def _sdk_libraries() -> List[str]:
    """The HTTP libraries the installed openai and anthropic SDKs depend on, by their metadata."""
    from importlib import metadata

    found: List[str] = []
    for sdk in ("openai", "anthropic"):
        try:
            requirements = metadata.requires(sdk) or []
        except metadata.PackageNotFoundError:
            continue
        names = {re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
        found += [library for library in ("httpx2", "httpx") if library in names]
    return found


def http_library(name: Optional[str]) -> ModuleType:
    """The module an SDK client is made with: `name` when given; else the one the installed SDKs depend on
    (anthropic 2 and openai 3 use httpx2 and anthropic refuses httpx's clients; earlier versions use
    httpx and want its clients), httpx2 when they differ and it is installed, else httpx."""
    import importlib

    if name is not None:
        if name not in ("httpx", "httpx2"):
            raise ValueError(f"library must be 'httpx' or 'httpx2', not {name!r}")
        return importlib.import_module(name)
    wanted = _sdk_libraries()
    if wanted and all(library == "httpx" for library in wanted):
        return httpx
    try:
        return importlib.import_module("httpx2")
    except ImportError:
        return httpx
