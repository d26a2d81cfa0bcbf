"""One way to build an endpoint, for every surface.

A surface (the native gRPC API, or one REST dialect) is a `Surface`: the gate
that checks its callers, what a call needs of them, and an `ErrorTable` that
says how each failure is answered, as python-api-core maps status codes to
exceptions. `endpoint` (unary) and `stream` (server streaming) wrap a
servicer method with both, so no surface writes its own decorator:

- the caller is admitted first (credentials, then any per-surface check such
  as a rate limit, which may add headers to every answer);
- a core error leaves in the surface's shape (a gRPC status with its
  `google.rpc.ErrorInfo`, or a dialect's HTTP status and body), a dialect's
  own `HttpError` as it is, anything else is logged and answered as the
  surface's internal error, never with its text.

A REST dialect's error is a gRPC status whose trailing metadata carries the
HTTP answer (`x-http-status`, `x-http-body`, and any headers such as
`goa-error`), which Envoy's Lua filter (envoy/errors.lua) turns into the
response. Raised before the first message, trailing metadata travels as
headers (a trailers-only response), so the hint reaches Envoy whatever the
outcome.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar, overload

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from tasktrail.api.lenient import Malformed
from tasktrail.auth.gate import Admission, Credential, Gate
from tasktrail.auth.principal import Requirement, current
from tasktrail.core import errors, metrics
from tasktrail.core.model import Access, Scope

log = logging.getLogger("tasktrail.api")
requests_log = logging.getLogger("tasktrail.requests")
# Which calls are logged (--log-requests): "writes" (and every failure), "all", "none".
LOG_REQUESTS = "writes"

Context = aio.ServicerContext[Any, Any]
Headers = tuple[tuple[str, str], ...]
S = TypeVar("S", bound="Served")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

ERROR_DOMAIN = "tasktrail.dev"
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
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class HttpError(Exception):
    """An answer in a dialect's own error shape."""

    status: int
    body: Mapping[str, Any]
    headers: Headers = field(default=())

    def with_headers(self, headers: Headers) -> HttpError:
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


def status_code(error: errors.CoreError) -> grpc.StatusCode:
    """The gRPC code of a core error (the core names codes without importing gRPC)."""
    return grpc.StatusCode[error.code]


def http_metadata(error: HttpError) -> Headers:
    # ensure_ascii: metadata values must be printable ASCII.
    body = json.dumps(error.body, ensure_ascii=True, separators=(",", ":"))
    return ((HTTP_STATUS_HEADER, str(error.status)), (HTTP_BODY_HEADER, body), *error.headers)


def rich_status(error: errors.CoreError) -> tuple[tuple[str, bytes], ...]:
    """google.rpc.Status with an ErrorInfo, as grpc-status-details-bin."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=status_code(error).value[0], message=error.message, details=[info])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class ErrorTable(abc.ABC):
    """How one surface answers a failure. `abort` never returns."""

    @abc.abstractmethod
    async def abort(self, context: Context, failure: Exception, headers: Headers = ()) -> NoReturn: ...


class GrpcErrors(ErrorTable):
    """The native API's: a core error is its gRPC status with an ErrorInfo
    carrying its reason; anything else is INTERNAL, with no detail."""

    async def abort(self, context: Context, failure: Exception, headers: Headers = ()) -> NoReturn:
        if isinstance(failure, errors.CoreError):
            await context.abort(status_code(failure), failure.message, trailing_metadata=rich_status(failure))
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("abort returns only by raising")


@dataclass(frozen=True)
class HttpErrors(ErrorTable):
    """A REST dialect's: its own `HttpError`s as they are, core errors through
    `translate`, anything else as `internal`."""

    translate: Callable[[errors.CoreError], HttpError]
    internal: HttpError

    def answer_for(self, failure: Exception) -> HttpError:
        if isinstance(failure, HttpError):
            return failure
        if isinstance(failure, errors.CoreError):
            return self.translate(failure)
        return self.internal

    async def abort(self, context: Context, failure: Exception, headers: Headers = ()) -> NoReturn:
        answer = self.answer_for(failure).with_headers(headers)
        await context.abort(grpc_code(answer.status), answer.message, trailing_metadata=http_metadata(answer))
        raise AssertionError("abort returns only by raising")


Check = Callable[[Context], Awaitable[Headers]]


@dataclass(frozen=True)
class Surface:
    """One API surface: its name (in metrics and logs), its gate, what its calls
    need, how it answers failures, and any check made after the caller is known
    (it returns headers every answer then carries, such as a rate limit's)."""

    name: str
    gate: Gate
    errors: ErrorTable
    need: Requirement = Requirement.READER
    check: Check | None = None

    async def admit(self, context: Context, name: str, need: Requirement | None = None) -> tuple[Headers, Admission]:
        """The caller, checked by the gate against the call's need (the surface's,
        unless the method states its own; a refusal is this surface's answer), and
        the headers any further check adds."""
        admission = await self.answer(context, self.gate.admit(context, need or self.need), name)
        headers = () if self.check is None else await self.answer(context, self.check(context), name)
        return headers, admission

    async def fail(self, context: Context, failure: Exception, name: str, headers: Headers = ()) -> NoReturn:
        if not isinstance(failure, errors.CoreError | HttpError):
            log.error("%s failed", name, exc_info=failure)
        elif isinstance(failure, errors.ResourceExhausted) and failure.reason == errors.RATE_LIMITED:
            metrics.rate_limited(self.name)
        await self.errors.abort(context, failure, headers)

    async def answer(self, context: Context, call: Awaitable[Resp], name: str, headers: Headers = ()) -> Resp:
        """The result of `call`, or its failure in this surface's shape."""
        try:
            return await call
        except aio.AbortError:
            raise
        except Exception as failure:
            await self.fail(context, failure, name, headers)


class Served(Protocol):
    surface: Surface


Unary = Callable[[S, Req, Context], Awaitable[Resp]]


@overload
def endpoint(fn: Unary[S, Req, Resp], /) -> Unary[S, Req, Resp]: ...


@overload
def endpoint(*, need: Requirement) -> Callable[[Unary[S, Req, Resp]], Unary[S, Req, Resp]]: ...


def endpoint(
    fn: Unary[S, Req, Resp] | None = None, /, *, need: Requirement | None = None
) -> Unary[S, Req, Resp] | Callable[[Unary[S, Req, Resp]], Unary[S, Req, Resp]]:
    """A unary method of a servicer, admitted and answered by its surface.
    `@endpoint(need=Requirement.OPERATOR)` states a need of its own (a cancel on a
    surface of readers), in place of the surface's."""
    if fn is None:
        return functools.partial(_endpoint, need=need)
    return _endpoint(fn, need)


def _endpoint(fn: Unary[S, Req, Resp], need: Requirement | None) -> Unary[S, Req, Resp]:
    name, method = fn.__qualname__, fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        surface = self.surface
        needs = need or surface.need
        started = time.perf_counter()
        try:
            if isinstance(request, Malformed):
                await surface.fail(context, errors.InvalidArgument(request.message), name)
            headers, _ = await surface.admit(context, name, needs)
            reply = await surface.answer(context, fn(self, request, context), name, headers)
            if headers:
                await context.send_initial_metadata(headers)
        except aio.AbortError:
            _done(context, surface, method, _answered(context), time.perf_counter() - started, needs)
            raise
        _done(context, surface, method, "OK", time.perf_counter() - started, needs)
        return reply

    return wrapper


def _done(context: Context, surface: Surface, method: str, code: str, seconds: float | None, need: Requirement) -> None:
    """A call answered: counted, and logged as --log-requests says (a write, a
    cancel or a failure by default: a read that succeeded is Envoy's access log's business)."""
    metrics.request(surface.name, method, code, seconds)
    if LOG_REQUESTS == "none" or (LOG_REQUESTS == "writes" and code == "OK" and need is Requirement.READER):
        return
    principal = current.get()
    caller = None if principal is None else principal.account_id or principal.token_id
    request_id = next((v for k, v in context.invocation_metadata() or () if k == "x-request-id"), None)
    took = "" if seconds is None else f" in {seconds * 1000:.1f} ms"
    requests_log.info(
        "%s %s %s%s",
        surface.name,
        method,
        code,
        took,
        extra={
            "surface": surface.name,
            "method": method,
            "code": code,
            "duration_ms": None if seconds is None else round(seconds * 1000, 3),
            "caller": caller,
            "request_id": request_id,
        },
    )


def _answered(context: Context) -> str:
    """The code a failed call was answered with: a dialect's HTTP status, or the gRPC code's name."""
    for key, value in context.trailing_metadata() or ():
        if key == HTTP_STATUS_HEADER:
            return str(value)
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def stream(
    fn: Callable[[S, Req, Context], AsyncIterator[Resp]],
) -> Callable[[S, Req, Context], AsyncIterator[Resp]]:
    """A server-streaming method, admitted and answered by its surface: a failure
    ends the stream with the surface's error (a status before the first
    message travels as headers; the REST tails also write their own error
    frames, which need no exception). While it runs, its caller's credential
    is checked again every few seconds: revoked, the stream ends UNAUTHENTICATED."""

    name, method = fn.__qualname__, fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: S, request: Req, context: Context) -> AsyncIterator[Resp]:
        surface = self.surface
        try:
            if isinstance(request, Malformed):
                await surface.fail(context, errors.InvalidArgument(request.message), name)
            headers, admission = await surface.admit(context, name)
        except aio.AbortError:
            _done(context, surface, method, _answered(context), None, surface.need)
            raise
        _done(context, surface, method, "OK", None, surface.need)  # a stream opened: counted, not timed
        watch = _Revocation.watch(surface.gate, admission)
        try:
            async for item in fn(self, request, context):
                yield item
        except asyncio.CancelledError:
            if watch is None or not watch.revoked:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            revoked = errors.Unauthenticated("the credential was revoked", reason=errors.REVOKED)
            await surface.fail(context, revoked, name, headers)
        except aio.AbortError:
            raise
        except Exception as failure:
            await surface.fail(context, failure, name, headers)
        finally:
            if watch is not None:
                watch.stop()

    return wrapper


class _Revocation:
    """Checks a stream's credential every `gate.recheck` seconds; once it no
    longer works, cancels the stream's task (which then ends UNAUTHENTICATED)."""

    def __init__(self, gate: Gate, credential: Credential, stream: asyncio.Task[Any]) -> None:
        self.revoked = False
        self._gate = gate
        self._credential = credential
        self._stream = stream
        self._task = asyncio.create_task(self._run(), name="revocation watch")

    @classmethod
    def watch(cls, gate: Gate, admission: Admission) -> _Revocation | None:
        task = asyncio.current_task()
        if admission.credential is None or task is None:
            return None
        return cls(gate, admission.credential, task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._gate.recheck)
            if not await self._gate.still_valid(self._credential):
                self.revoked = True
                self._stream.cancel()
                return

    def stop(self) -> None:
        self._task.cancel()


_OPEN: dict[tuple[Scope, ...], Access] = {}


def caller_access(scopes: tuple[Scope, ...] = tuple(Scope)) -> Access:
    """What the caller may see within a surface's scopes: its credential's
    grants, or all of them on a surface that asks for no credentials (made
    once per set of scopes)."""
    principal = current.get()
    if principal is not None:
        return principal.access.restricted_to(scopes)
    open_access = _OPEN.get(scopes)
    if open_access is None:
        open_access = _OPEN[scopes] = Access.everything().restricted_to(scopes)
    return open_access
