"""The client of a QuotaMesh node's local API (openapi.yaml at the repository's root)."""
from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar, Union, cast

import httpx

from ._errors import BadRequest, NodeUnreachable, QuotaDenied, QuotaMeshError, Unauthorized
from ._usage import Costs, usage_dimensions, usage_from_json

try:  # Python 3.8+
    from typing import Literal
except ImportError:  # pragma: no cover
    from typing_extensions import Literal  # type: ignore

Priority = Literal["urgent", "normal", "low"]
Cost = Union[int, Mapping[str, int]]
Headers = Union[httpx.Headers, Mapping[str, Union[str, List[str]]], List[Tuple[str, str]], None]
F = TypeVar("F", bound=Callable[..., Any])

#: The longest one acquire may wait at the node (the API's `wait_ms` limit).
MAX_WAIT_SECONDS = 600.0

#: The shortest pause before asking again, whatever the node says.
_MIN_PAUSE = 0.005


def default_base_url() -> str:
    """`$QUOTAMESH_API` (HOST:PORT, as the CLI takes it, or a URL), else the node's default address."""
    address = os.environ.get("QUOTAMESH_API", "").strip()
    if not address:
        return "http://127.0.0.1:9721"
    return address if "://" in address else f"http://{address}"


def default_token() -> Optional[str]:
    """The token in `$QUOTAMESH_API_TOKEN_FILE`, if that names a file."""
    path = os.environ.get("QUOTAMESH_API_TOKEN_FILE", "").strip()
    if not path:
        return None
    with open(path, encoding="utf-8") as file:
        return file.read().strip() or None


def header_object(headers: Headers) -> Dict[str, Union[str, List[str]]]:
    """Response headers as `observe` takes them: lower-case names, a list where a name repeats."""
    if headers is None:
        return {}
    if hasattr(headers, "multi_items"):  # httpx's or httpx2's Headers
        pairs = headers.multi_items()  # type: ignore[union-attr]
    elif isinstance(headers, Mapping):
        pairs = []
        for name, value in headers.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs.extend((name, v) for v in values)
    else:
        pairs = list(headers)
    result: Dict[str, Union[str, List[str]]] = {}
    for name, value in pairs:
        key, text = str(name).lower(), str(value)
        if key not in result:
            result[key] = text
        elif isinstance(result[key], list):
            cast(List[str], result[key]).append(text)
        else:
            result[key] = [cast(str, result[key]), text]
    return result


class _GrantBase:
    """What the node granted: the account to call with and the cost charged, by dimension.

    `ungated` is true when the node knew nothing of the service (`unknown_service`): the call goes ahead,
    and its report teaches the node the upstream's limits.
    """

    def __init__(self, client: "Client", service: str, answer: Mapping[str, Any], ungated: bool = False):
        self._client = client
        self.service: str = service
        self.answer: Mapping[str, Any] = answer
        self.ungated: bool = ungated
        self.granted: bool = not ungated
        self.account: Optional[str] = answer.get("account")
        self.cost: Costs = dict(answer.get("cost") or {}) if not ungated else {}
        self.detail: Optional[str] = answer.get("detail")
        self.window_end_ms: Optional[int] = answer.get("window_end_ms")
        self.quota: Optional[Mapping[str, Any]] = answer.get("quota")
        self.reported: bool = False

    def _observe_body(self, status: int, headers: Headers, usage: Any) -> Dict[str, Any]:
        if self.reported:
            raise QuotaMeshError(f"this grant of {self.service} was already reported")
        body: Dict[str, Any] = {"service": self.service, "status": int(status), "headers": header_object(headers)}
        if self.account is not None and not self.ungated:
            body["account"] = self.account
        dimensions = usage_dimensions(usage)
        if dimensions:
            body["usage"] = dimensions
            reserved = {k: v for k, v in self.cost.items() if k != "requests"}
            if reserved:
                body["cost"] = reserved
        self.reported = True
        return body

    def __repr__(self) -> str:
        state = "ungated" if self.ungated else f"granted on {self.account}"
        return f"<{type(self).__name__} {self.service} {state} cost={self.cost}>"


class Grant(_GrantBase):
    """A grant in synchronous code; ``report`` sends the upstream's answer to the node."""

    def report(self, status: int, headers: Headers = None, usage: Any = None) -> Mapping[str, Any]:
        """Reports the upstream's response: its status, every header, and what it used (`usage`, a mapping
        of dimensions or an SDK's usage object), so that the difference from the cost is refunded.
        Returns the node's answer (what it understood, the merged quota)."""
        return self._client._post("/v1/observe", self._observe_body(status, headers, usage))[1]


class AsyncGrant(_GrantBase):
    """A grant in asyncio code; ``report`` is awaited."""

    async def report(self, status: int, headers: Headers = None, usage: Any = None) -> Mapping[str, Any]:
        """As :meth:`Grant.report`."""
        return (await self._client._post_async("/v1/observe", self._observe_body(status, headers, usage)))[1]


def _looks_like_response(value: Any) -> bool:
    return isinstance(getattr(value, "status_code", None), int) and hasattr(value, "headers")


def _response_usage(response: Any) -> Costs:
    """The usage in an httpx or requests response's JSON body, when it has been read."""
    content = getattr(response, "_content", None)
    if content is None and not isinstance(response, httpx.Response):
        content = getattr(response, "content", None)
    return usage_from_json(content) if isinstance(content, (bytes, bytearray)) else {}


class Acquisition:
    """One acquire: a context manager (``with`` or ``async with``) that gives a grant, or a decorator that
    acquires before each call of the function and reports what it returns when that is an HTTP response.

    Leaving the block without ``grant.report(...)`` reports nothing and refunds nothing.
    """

    def __init__(self, client: "Client", service: str, priority: Priority, cost: Cost, wait: float):
        self._client = client
        self._args = (service, priority, cost, wait)

    def __enter__(self) -> Grant:
        return cast(Grant, self._client._acquire(*self._args, grant_type=Grant))

    def __exit__(self, *exc: Any) -> None:
        return None

    async def __aenter__(self) -> AsyncGrant:
        return cast(AsyncGrant, await self._client._acquire_async(*self._args))

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def __call__(self, function: F) -> F:
        if asyncio.iscoroutinefunction(function):

            @functools.wraps(function)
            async def acquiring(*args: Any, **kwargs: Any) -> Any:
                async with self as grant:
                    result = await function(*args, **kwargs)
                    if _looks_like_response(result):
                        await grant.report(result.status_code, dict(result.headers), _response_usage(result))
                    return result

            return cast(F, acquiring)

        @functools.wraps(function)
        def acquiring_sync(*args: Any, **kwargs: Any) -> Any:
            with self as grant:
                result = function(*args, **kwargs)
                if _looks_like_response(result):
                    grant.report(result.status_code, dict(result.headers), _response_usage(result))
                return result

        return cast(F, acquiring_sync)


class Client:
    """A QuotaMesh node's local API, from synchronous and asyncio code alike.

    `base_url` defaults to `$QUOTAMESH_API`, else `http://127.0.0.1:9721`; `token` to the token in
    `$QUOTAMESH_API_TOKEN_FILE`, for a node that has one.
    """

    def __init__(self, base_url: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 10.0):
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self.token = token if token is not None else default_token()
        self.timeout = timeout
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        # The node holds an acquire up to its wait: the read timeout covers the longest wait asked.
        self._timeout = httpx.Timeout(timeout, read=timeout + MAX_WAIT_SECONDS)
        self._sync = httpx.Client(base_url=self.base_url, headers=headers, timeout=self._timeout)
        self._async_headers = headers
        # An httpx.AsyncClient's connections belong to one event loop: one per loop that used it last.
        self._async: Optional[httpx.AsyncClient] = None
        self._async_loop: Optional[asyncio.AbstractEventLoop] = None

    # MARK: - The API

    def acquire(self, service: str, priority: Priority = "normal", cost: Cost = 1, wait: float = 0.0) -> Acquisition:
        """Asks for one call of `service` before making it: ``with client.acquire(...) as grant:`` (or
        ``async with``), or ``@client.acquire(...)`` on a function.

        `cost` is requests (an int) or a mapping of dimensions, ``{"requests": 1, "tokens": 1800}``;
        `wait` is how many seconds the call may wait for a grant. Raises :class:`QuotaDenied` when none
        comes in time.
        """
        if priority not in ("urgent", "normal", "low"):
            raise BadRequest(f"priority must be urgent, normal or low, not {priority!r}")
        return Acquisition(self, service, priority, cost, max(0.0, float(wait)))

    def observe(self, service: str, status: int, headers: Headers = None, *, account: Optional[str] = None,
                usage: Any = None, cost: Optional[Mapping[str, int]] = None) -> Mapping[str, Any]:
        """Reports an upstream response that no grant covers (e.g. a call made before the node ran)."""
        body: Dict[str, Any] = {"service": service, "status": int(status), "headers": header_object(headers)}
        if account is not None:
            body["account"] = account
        dimensions = usage_dimensions(usage)
        if dimensions:
            body["usage"] = dimensions
        if cost:
            body["cost"] = dict(cost)
        return self._post("/v1/observe", body)[1]

    def quota(self, service: Optional[str] = None) -> Mapping[str, Any]:
        """The merged view of one service (Q with its `accounts`), or of every key (`{"quotas": [...]}`)."""
        return self._get(f"/v1/quota/{service}" if service else "/v1/quota")

    def health(self) -> Mapping[str, Any]:
        """`/healthz`: whether the node is ok or degraded, and why."""
        return self._get("/healthz")

    def peers(self) -> Mapping[str, Any]:
        """This node and its trusted peers."""
        return self._get("/v1/peers")

    # MARK: - SDK integrations

    def httpx_client(self, service: str, priority: Priority = "normal", *, deadline: float = 60.0,
                     default_max_output_tokens: Optional[int] = None, library: Optional[str] = None,
                     **kwargs: Any) -> httpx.Client:
        """An `httpx.Client` to pass as ``http_client=`` to ``openai.OpenAI(...)`` or
        ``anthropic.Anthropic(...)``: each request acquires first (its tokens estimated from the prompt and
        `max_tokens`), waits up to `deadline` seconds when the node says not now, and is reported after,
        with its usage, so the estimate is refunded. Past the deadline the SDK gets a 429 of the node's.

        The client is made with the httpx the installed SDKs depend on (httpx2 for anthropic 2 and openai 3,
        and anthropic refuses httpx's clients; httpx for earlier versions); `library="httpx"` or
        `"httpx2"` chooses.
        Other keyword arguments go to the client (`timeout`, `headers`, `transport` beneath this one, …).
        """
        from ._transport import http_library, transports

        module = http_library(library)
        transport = transports(module)[0](self, service, priority, deadline, kwargs.pop("transport", None),
                                          default_max_output_tokens)
        kwargs.setdefault("timeout", module.Timeout(600.0, connect=10.0))
        return module.Client(transport=transport, **kwargs)  # type: ignore[no-any-return]

    def async_httpx_client(self, service: str, priority: Priority = "normal", *, deadline: float = 60.0,
                           default_max_output_tokens: Optional[int] = None, library: Optional[str] = None,
                           **kwargs: Any) -> httpx.AsyncClient:
        """As :meth:`httpx_client`, an `httpx.AsyncClient` (or httpx2's) for ``openai.AsyncOpenAI`` or
        ``anthropic.AsyncAnthropic``."""
        from ._transport import http_library, transports

        module = http_library(library)
        transport = transports(module)[1](self, service, priority, deadline, kwargs.pop("transport", None),
                                          default_max_output_tokens)
        kwargs.setdefault("timeout", module.Timeout(600.0, connect=10.0))
        return module.AsyncClient(transport=transport, **kwargs)  # type: ignore[no-any-return]

    # MARK: - Lifetime

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        if self._async is not None and self._async_loop is asyncio.get_running_loop():
            await self._async.aclose()
        self._async = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
        self.close()

    # MARK: - Requests

    def _acquire_body(self, service: str, priority: str, cost: Cost, wait: float) -> Dict[str, Any]:
        return {"service": service, "priority": priority,
                "cost": dict(cost) if isinstance(cost, Mapping) else int(cost),
                "wait_ms": int(min(wait, MAX_WAIT_SECONDS) * 1000)}

    def _acquire(self, service: str, priority: Priority, cost: Cost, wait: float, grant_type: type = Grant) -> _GrantBase:
        deadline = time.monotonic() + wait
        while True:
            left = max(0.0, deadline - time.monotonic())
            status, answer = self._post("/v1/acquire", self._acquire_body(service, priority, cost, left), denial_ok=True)
            outcome = self._outcome(service, status, answer, deadline, grant_type)
            if isinstance(outcome, _GrantBase):
                return outcome
            time.sleep(outcome)

    async def _acquire_async(self, service: str, priority: Priority, cost: Cost, wait: float) -> AsyncGrant:
        deadline = time.monotonic() + wait
        while True:
            left = max(0.0, deadline - time.monotonic())
            status, answer = await self._post_async(
                "/v1/acquire", self._acquire_body(service, priority, cost, left), denial_ok=True)
            outcome = self._outcome(service, status, answer, deadline, AsyncGrant)
            if isinstance(outcome, _GrantBase):
                return cast(AsyncGrant, outcome)
            await asyncio.sleep(outcome)

    def _outcome(self, service: str, status: int, answer: Mapping[str, Any], deadline: float,
                 grant_type: type) -> Union[_GrantBase, float]:
        """A grant, or how long to pause before asking again; raises a denial that cannot wait."""
        if status == 200:
            return grant_type(self, service, answer)
        if answer.get("reason") == "unknown_service":
            return grant_type(self, service, answer, ungated=True)
        pause = max(_MIN_PAUSE, float(answer.get("retry_after_ms", 0)) / 1000)
        if time.monotonic() + pause > deadline:
            raise QuotaDenied(answer)
        return pause

    def _check(self, response: httpx.Response, denial_ok: bool = False) -> Tuple[int, Mapping[str, Any]]:
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": response.text}
        if not isinstance(answer, dict):
            answer = {"error": str(answer)}
        status = response.status_code
        if status == 200 or (status == 429 and denial_ok):
            return status, answer
        message = str(answer.get("error") or f"HTTP {status}")
        if status == 400:
            raise BadRequest(message, status, answer)
        if status == 401:
            raise Unauthorized(message, status, answer)
        raise QuotaMeshError(message, status, answer)

    def _post(self, path: str, body: Mapping[str, Any], denial_ok: bool = False) -> Tuple[int, Mapping[str, Any]]:
        try:
            response = self._sync.post(path, json=body)
        except httpx.TransportError as error:
            raise NodeUnreachable(f"no QuotaMesh node answered at {self.base_url}: {error}") from error
        return self._check(response, denial_ok)

    def _get(self, path: str) -> Mapping[str, Any]:
        try:
            response = self._sync.get(path)
        except httpx.TransportError as error:
            raise NodeUnreachable(f"no QuotaMesh node answered at {self.base_url}: {error}") from error
        return self._check(response)[1]

    async def _post_async(self, path: str, body: Mapping[str, Any], denial_ok: bool = False) -> Tuple[int, Mapping[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self._async = httpx.AsyncClient(base_url=self.base_url, headers=self._async_headers, timeout=self._timeout)
            self._async_loop = loop
        try:
            response = await self._async.post(path, json=body)
        except httpx.TransportError as error:
            raise NodeUnreachable(f"no QuotaMesh node answered at {self.base_url}: {error}") from error
        return self._check(response, denial_ok)
