"""The one error a request to the API server raises, and the one way to describe it.

Every adapter in `kube/` turns what the Kubernetes client and urllib3 raise (an HTTP error
answer, a refused or reset connection, a timeout, an undecodable body) into `ApiError`, so
callers above `kube/` catch one type and never import the client.
"""

from __future__ import annotations

import orjson
import urllib3
from kubernetes.client.exceptions import ApiException

__all__ = ["ApiError", "describe_error", "error_status"]


class ApiError(Exception):
    """A request to the API server that failed.

    `status` is the HTTP status of the answer, or None when there was no usable answer
    (connection refused or reset, timed out, a body that is not JSON). `str(error)` is the
    one-line description an operator reads: `HTTP 503 Service Unavailable: <message>`, or the
    underlying error's type and first line.
    """

    def __init__(
        self, description: str, *, status: int | None = None, reason: str = "", message: str = ""
    ) -> None:
        super().__init__(description)
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_answer(cls, status: int, reason: str | None, body: bytes | str | None) -> ApiError:
        """An HTTP error answer; `message` is the Status object's, when the body is one."""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        message = ""
        if isinstance(body, str) and body.startswith("{"):
            try:
                decoded = orjson.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                message = str(decoded.get("message", ""))
        text = f"HTTP {status} {reason or ''}".rstrip()
        return cls(
            f"{text}: {message}" if message else text,
            status=status,
            reason=reason or "",
            message=message,
        )

    @classmethod
    def from_exception(cls, exc: BaseException) -> ApiError:
        """The ApiError for what the client or the connection raised (`exc` itself if it is one)."""
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, ApiException) and exc.status:
            return cls.from_answer(int(exc.status), exc.reason, exc.body)
        first = str(exc).splitlines()[0] if str(exc) else ""
        name = type(exc).__name__
        return cls(f"{name}: {first}" if first else name)


#: What the client and the connection raise, turned into `ApiError` by the adapters (orjson's
#: JSONDecodeError is a ValueError; timeouts and resets are OSErrors or urllib3 errors).
CLIENT_ERRORS: tuple[type[Exception], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,
)


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of an API error, or None for anything without an answer."""
    return exc.status if isinstance(exc, ApiError) else None


def describe_error(exc: BaseException) -> str:
    """One line for a log or a report: an `ApiError`'s description; for anything else (what
    the Kubernetes client raises outside an adapter, say) the same text `ApiError` would carry."""
    return str(ApiError.from_exception(exc))
