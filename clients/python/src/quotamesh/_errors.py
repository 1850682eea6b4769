"""What can go wrong between an agent and its node."""
from __future__ import annotations

from typing import Any, Mapping, Optional


class QuotaMeshError(Exception):
    """The node refused a request (`status` is its HTTP status) or could not be asked (`status` is None)."""

    def __init__(self, message: str, status: Optional[int] = None, answer: Optional[Mapping[str, Any]] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.answer: Mapping[str, Any] = answer or {}


class NodeUnreachable(QuotaMeshError):
    """No node answered at the client's address (it is not running, or listens elsewhere)."""


class BadRequest(QuotaMeshError):
    """The node refused the request's body (400); the message names the field."""


class Unauthorized(QuotaMeshError):
    """The node has an API token and the client sent none or another (401)."""


class QuotaDenied(QuotaMeshError):
    """Not now: the node did not grant the call within the wait allowed.

    `reason` and `detail` are the node's (README, "Why a call was denied"); `retry_after` is how many
    seconds until asking again may succeed, `retry_at` the same moment in Unix seconds.
    """

    def __init__(self, answer: Mapping[str, Any]):
        self.reason: str = str(answer.get("reason", "quota_exhausted"))
        self.detail: Optional[str] = answer.get("detail")
        self.retry_after: float = float(answer.get("retry_after_ms", 0)) / 1000
        self.retry_at: float = float(answer.get("retry_at_ms", 0)) / 1000
        self.account: Optional[str] = answer.get("account")
        self.quota: Optional[Mapping[str, Any]] = answer.get("quota")
        detail = f" ({self.detail})" if self.detail else ""
        super().__init__(
            f"quota denied: {self.reason}{detail}; ask again in {self.retry_after:.3f} s", status=429, answer=answer)
