"""The REST dialects: thin gRPC servicers that show core tasks in an existing
API's shape. Envoy transcodes their HTTP bindings.

A dialect's error is a gRPC status whose trailing metadata carries the HTTP
answer: `x-http-status` and `x-http-body`, which Envoy's Lua filter
(envoy/errors.lua) turns into the response status and body, plus any headers
the dialect wants (such as `goa-error`). Raised before the first message,
trailing metadata travels as headers (a trailers-only response), so the hint
reaches Envoy whatever the outcome.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

import grpc
from grpc import aio

from tasktrail import auth, errors
from tasktrail.model import Access, Scope, Task

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M")

HTTP_STATUS_HEADER = "x-http-status"
HTTP_BODY_HEADER = "x-http-body"

# The gRPC code each HTTP status travels as, for gRPC clients of a dialect.
_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    406: grpc.StatusCode.FAILED_PRECONDITION,
    409: grpc.StatusCode.ABORTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


@dataclass
class HttpError(Exception):
    """An answer in a dialect's own error shape."""

    status: int
    body: Mapping[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())

    def with_headers(self, headers: tuple[tuple[str, str], ...]) -> HttpError:
        return HttpError(self.status, self.body, (*self.headers, *headers)) if headers else self

    @property
    def message(self) -> str:
        for key in ("message", "description"):
            value = self.body.get(key)
            if isinstance(value, str):
                return value
        return json.dumps(self.body)


def grpc_code(http_status: int) -> grpc.StatusCode:
    return _GRPC_CODES.get(
        http_status, grpc.StatusCode.UNKNOWN if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT
    )


def http_metadata(error: HttpError) -> tuple[tuple[str, str], ...]:
    # ensure_ascii: metadata values must be printable ASCII.
    body = json.dumps(error.body, ensure_ascii=True, separators=(",", ":"))
    return ((HTTP_STATUS_HEADER, str(error.status)), (HTTP_BODY_HEADER, body), *error.headers)


async def abort_http(context: aio.ServicerContext[Any, Any], error: HttpError) -> NoReturn:
    await context.abort(grpc_code(error.status), error.message, trailing_metadata=http_metadata(error))
    raise AssertionError("abort returns only by raising")


async def answer(
    context: aio.ServicerContext[Any, Any],
    call: Awaitable[T],
    translate: Callable[[errors.CoreError], HttpError],
    internal: HttpError,
    headers: tuple[tuple[str, str], ...] = (),
) -> T:
    """Runs a dialect's handler; every failure leaves as the dialect's own HTTP
    answer: its HttpErrors as they are, core errors translated (both with
    `headers` added), anything else logged and answered as `internal`."""
    try:
        return await call
    except HttpError as exc:
        await abort_http(context, exc.with_headers(headers))
    except errors.CoreError as exc:
        await abort_http(context, translate(exc).with_headers(headers))
    except aio.AbortError:
        raise
    except Exception:
        log.exception("a dialect request failed")
        await abort_http(context, internal)


def rfc3339(us: int) -> str:
    """RFC 3339 in UTC with whole seconds, as Go's time.RFC3339 writes it."""
    return _rfc3339_seconds(us // 1_000_000)


@functools.lru_cache(maxsize=4096)  # a log's entries share their seconds
def _rfc3339_seconds(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


_OPEN: dict[tuple[Scope, ...], Access] = {}


def caller_access(scopes: tuple[Scope, ...]) -> Access:
    """The caller's access within a dialect's scopes; all of them on a port
    that asks for no credentials (made once per set of scopes)."""
    principal = auth.current.get()
    if principal is not None:
        return principal.access.restricted_to(scopes)
    open_access = _OPEN.get(scopes)
    if open_access is None:
        open_access = _OPEN[scopes] = Access.everything().restricted_to(scopes)
    return open_access


class Rendered(Generic[M]):
    """A dialect's rendering of tasks, kept for ended ones: an ended task never
    changes, and while it stays in the core's memory the core hands out the same
    Task object for it, so the same message serves every read. Oldest first out."""

    __slots__ = ("_items", "_render", "_size")

    def __init__(self, render: Callable[[Task], M], size: int = 10_000) -> None:
        self._render = render
        self._size = size
        self._items: dict[str, tuple[Task, M]] = {}

    def __call__(self, task: Task) -> M:
        if not task.status.terminal:
            return self._render(task)
        hit = self._items.get(task.task_id)
        if hit is not None and hit[0] is task:
            return hit[1]
        message = self._render(task)
        if hit is None and len(self._items) >= self._size:
            del self._items[next(iter(self._items))]
        self._items[task.task_id] = (task, message)
        return message
