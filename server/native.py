"""The native gRPC API: `tasktrail.v1.TaskService` (read) and
`tasktrail.v1.TaskWriterService` (write), for tasks of every scope."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from tasktrail import auth, errors, follow
from tasktrail.core import EVERYTHING, TaskCore
from tasktrail.model import (
    Access,
    ErrorDetail,
    LogEntry,
    NewLogEntry,
    NewTask,
    Progress,
    Range,
    Result,
    Scope,
    Status,
    TargetProgress,
    Task,
    TaskChanges,
    TaskError,
    TaskQuery,
    now_us,
)
from tasktrail.protojson import struct_to_dict
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

log = logging.getLogger(__name__)

ERROR_DOMAIN = "tasktrail.dev"
Ctx = aio.ServicerContext[Any, Any]
G = TypeVar("G", bound="Guarded")
Req = TypeVar("Req")
Resp = TypeVar("Resp")

STATUS_TO_PB = {
    Status.PENDING: task_pb2.TASK_STATUS_PENDING,
    Status.RUNNING: task_pb2.TASK_STATUS_RUNNING,
    Status.CANCELING: task_pb2.TASK_STATUS_CANCELING,
    Status.COMPLETED: task_pb2.TASK_STATUS_COMPLETED,
    Status.FAILED: task_pb2.TASK_STATUS_FAILED,
    Status.CANCELED: task_pb2.TASK_STATUS_CANCELED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
SCOPE_TO_PB = {
    Scope.DATABASE: task_pb2.SCOPE_DATABASE,
    Scope.HOST: task_pb2.SCOPE_HOST,
    Scope.ACCOUNT: task_pb2.SCOPE_ACCOUNT,
    Scope.CRDB: task_pb2.SCOPE_CRDB,
}
SCOPE_FROM_PB = {v: k for k, v in SCOPE_TO_PB.items()}


# -- conversions -------------------------------------------------------------------


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def to_pb_task(task: Task) -> task_pb2.Task:
    out = task_pb2.Task(
        task_id=task.task_id,
        scope=SCOPE_TO_PB[task.scope],
        entity_id=task.entity_id,
        type=task.type,
        status=STATUS_TO_PB[task.status],
        parent_id=task.parent_id or "",
        node_name=task.node_name or "",
        instance_id=task.instance_id or "",
        host_id=task.host_id or "",
        created_at=timestamp(task.created_at),
        updated_at=timestamp(task.updated_at),
        status_changed_at=timestamp(task.status_changed_at),
        in_commit_phase=task.in_commit_phase,
        worker_name=task.worker_name or "",
        last_entry_id=task.last_entry_id or "",
    )
    if task.started_at is not None:
        out.started_at.CopyFrom(timestamp(task.started_at))
    if task.completed_at is not None:
        out.completed_at.CopyFrom(timestamp(task.completed_at))
    if task.expire_at is not None:
        out.expire_at.CopyFrom(timestamp(task.expire_at))
    if task.lease_id is not None and task.lease_expires_at is not None:
        out.lease_expires_at.CopyFrom(timestamp(task.lease_expires_at))
    out.cancel_forced = task.cancel_forced
    if task.retention_us is not None:
        out.result_ttl.FromMicroseconds(task.retention_us)
    if task.error is not None:
        out.error.CopyFrom(to_pb_error(task.error))
    if task.progress is not None:
        p = task.progress
        out.progress.CopyFrom(
            task_pb2.TaskProgress(
                percent=p.percent,
                step=p.step,
                targets=[task_pb2.TargetProgress(name=t.name, step=t.step) for t in p.targets],
            )
        )
    if task.result is not None:
        r = task.result
        out.result.resource_id = r.resource_id
        out.result.additional_resource_id = r.additional_resource_id
        out.result.resource_path = r.resource_path
        out.result.resource_title = r.resource_title
        out.result.additional_info = r.additional_info
        if r.resource is not None:
            out.result.resource.update(r.resource)
    return out


def to_pb_error(error: TaskError) -> task_pb2.TaskError:
    return task_pb2.TaskError(
        code=error.code,
        message=error.message,
        http_status=error.http_status,
        details=[task_pb2.TaskErrorDetail(target=d.target, code=d.code, message=d.message) for d in error.details],
    )


def from_pb_error(error: task_pb2.TaskError) -> TaskError:
    return TaskError(
        code=error.code,
        message=error.message,
        http_status=error.http_status,
        details=tuple(ErrorDetail(d.target, d.code, d.message) for d in error.details),
    )


def to_pb_entry(entry: LogEntry) -> task_pb2.LogEntry:
    out = task_pb2.LogEntry(entry_id=entry.entry_id, timestamp=timestamp(entry.timestamp), message=entry.message)
    if entry.fields:
        out.fields.update(entry.fields)
    return out


def _cursor(after_entry_id: str) -> str | None:
    """An entry id to read after. None holds U+0000, and PostgreSQL could not even
    compare one: refused alike on every store."""
    if "\x00" in after_entry_id:
        raise errors.InvalidArgument("after_entry_id may not contain U+0000 (NUL)")
    return after_entry_id or None


def _scope(value: int) -> Scope:
    scope = SCOPE_FROM_PB.get(task_pb2.Scope.ValueType(value))
    if scope is None:
        raise errors.InvalidArgument("scope is required")
    return scope


def _status(value: int) -> Status:
    status = STATUS_FROM_PB.get(task_pb2.TaskStatus.ValueType(value))
    if status is None:
        raise errors.InvalidArgument(f"unknown status {value}")
    return status


# -- errors ------------------------------------------------------------------------


def rich_status(exc: errors.CoreError) -> tuple[tuple[str, bytes], ...]:
    """google.rpc.Status with an ErrorInfo, as grpc-status-details-bin."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message, details=[info])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class Guarded(Protocol):
    gate: auth.Gate
    need: auth.Requirement


def rpc(fn: Callable[[G, Req, Ctx], Awaitable[Resp]]) -> Callable[[G, Req, Ctx], Awaitable[Resp]]:
    """The caller's token is checked first; core errors become gRPC statuses with their reason attached."""

    @functools.wraps(fn)
    async def wrapper(self: G, request: Req, context: Ctx) -> Resp:
        await self.gate.admit(context, self.need)
        try:
            return await fn(self, request, context)
        except errors.CoreError as exc:
            await context.abort(exc.code, exc.message, trailing_metadata=rich_status(exc))
        except aio.AbortError:
            raise
        except Exception:
            log.exception("%s failed", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("abort returns only by raising")

    return wrapper


# -- page tokens ---------------------------------------------------------------------


def _fingerprint(request: task_service_pb2.ListTasksRequest) -> str:
    key = [request.scope, request.entity_id, sorted(request.statuses), sorted(request.types), request.sort_order]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def encode_page_token(request: task_service_pb2.ListTasksRequest, position: tuple[int, str]) -> str:
    raw = json.dumps({"p": list(position), "f": _fingerprint(request)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(request: task_service_pb2.ListTasksRequest) -> tuple[int, str]:
    token = request.page_token
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        created_at, task_id = data["p"]
        fingerprint = data["f"]
        if not isinstance(created_at, int) or not isinstance(task_id, str):
            raise ValueError("bad position")
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.InvalidArgument("page_token is not one this server gave") from exc
    if fingerprint != _fingerprint(request):
        raise errors.InvalidArgument("page_token belongs to a list with other filters")
    return (created_at, task_id)


# -- services ------------------------------------------------------------------------


def caller_access() -> Access:
    """What the caller's token may see (everything when the server runs without auth)."""
    principal = auth.current.get()
    return EVERYTHING if principal is None else principal.access


def list_ranges(request: task_service_pb2.ListTasksRequest, access: Access) -> tuple[Range, ...]:
    """The index ranges a ListTasks request reads: what it asks for, within what the caller may see."""
    if request.entity_id and not request.scope:
        raise errors.InvalidArgument("entity_id requires scope")
    if not request.scope:
        return access.ranges()
    scope = _scope(request.scope)
    narrowed = access.within(scope, request.entity_id or None)
    return narrowed.ranges()


def duration_us(value: duration_pb2.Duration) -> int:
    return value.seconds * 1_000_000 + value.nanos // 1000


def to_pb_frame(
    frame: follow.Frame, cache: follow.BatchCache[task_service_pb2.FollowTaskLogResponse]
) -> task_service_pb2.FollowTaskLogResponse:
    if isinstance(frame, follow.Entries):
        return cache.get(frame, "grpc", functools.partial(_entries_frame, frame.entries))
    out = task_service_pb2.FollowTaskLogResponse()
    if isinstance(frame, follow.Beat):
        out.heartbeat.time.CopyFrom(timestamp(frame.at))
    elif isinstance(frame, follow.Ended):
        out.end.task_status = STATUS_TO_PB[frame.status]
        out.end.last_entry_id = frame.last_entry_id or ""
    else:
        out.error.code = frame.error.code.value[0]
        out.error.message = frame.error.message
    return out


def _entries_frame(batch: list[LogEntry]) -> task_service_pb2.FollowTaskLogResponse:
    frame = task_service_pb2.FollowTaskLogResponse()
    frame.entries.entries.extend(to_pb_entry(e) for e in batch)
    return frame


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    need = auth.Requirement.READER

    def __init__(self, core: TaskCore, gate: auth.Gate = auth.OPEN, hub: follow.LogHub | None = None) -> None:
        self.core = core
        self.gate = gate
        self.hub = hub or follow.LogHub(core)
        self.frames: follow.BatchCache[task_service_pb2.FollowTaskLogResponse] = follow.BatchCache()

    @rpc
    async def GetTask(self, request: task_service_pb2.GetTaskRequest, context: Ctx) -> task_service_pb2.GetTaskResponse:
        task = await self.core.get_task(request.task_id, caller_access())
        return task_service_pb2.GetTaskResponse(task=to_pb_task(task))

    @rpc
    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Ctx
    ) -> task_service_pb2.ListTasksResponse:
        if request.page_size < 0:
            raise errors.InvalidArgument("page_size must not be negative")
        limits = self.core.limits
        query = TaskQuery(
            ranges=list_ranges(request, caller_access()),
            statuses=tuple(_status(s) for s in request.statuses),
            types=tuple(request.types),
            descending=request.sort_order != task_pb2.SORT_ORDER_ASCENDING,
            after=decode_page_token(request) if request.page_token else None,
            limit=min(request.page_size or limits.default_page_size, limits.max_page_size),
        )
        page = await self.core.list_tasks(query)
        token = encode_page_token(request, page.tasks[-1].position) if page.has_more else ""
        return task_service_pb2.ListTasksResponse(tasks=[to_pb_task(t) for t in page.tasks], next_page_token=token)

    @rpc
    async def GetTaskLog(
        self, request: task_service_pb2.GetTaskLogRequest, context: Ctx
    ) -> task_service_pb2.GetTaskLogResponse:
        if request.page_size < 0:
            raise errors.InvalidArgument("page_size must not be negative")
        page = await self.core.read_log(
            request.task_id, caller_access(), after_entry_id=_cursor(request.after_entry_id), limit=request.page_size
        )
        return task_service_pb2.GetTaskLogResponse(
            task_id=page.task.task_id,
            task_status=STATUS_TO_PB[page.task.status],
            entries=[to_pb_entry(e) for e in page.entries],
            last_entry_id=page.last_entry_id or "",
            has_more=page.has_more,
        )

    @rpc
    async def CancelTask(
        self, request: task_service_pb2.CancelTaskRequest, context: Ctx
    ) -> task_service_pb2.CancelTaskResponse:
        result = await self.core.cancel(request.task_id, caller_access(), force=request.force)
        return task_service_pb2.CancelTaskResponse(task=to_pb_task(result.task))

    @rpc
    async def WaitTask(
        self, request: task_service_pb2.WaitTaskRequest, context: Ctx
    ) -> task_service_pb2.WaitTaskResponse:
        timeout = duration_us(request.timeout) if request.HasField("timeout") else self.core.timing.max_wait
        task = await self.core.wait(request.task_id, timeout, caller_access())
        return task_service_pb2.WaitTaskResponse(task=to_pb_task(task), done=task.status.terminal)

    async def FollowTaskLog(
        self, request: task_service_pb2.FollowTaskLogRequest, context: Ctx
    ) -> AsyncIterator[task_service_pb2.FollowTaskLogResponse]:
        await self.gate.admit(context, self.need)
        try:
            after = _cursor(request.after_entry_id)
            task = await self.hub.open(request.task_id, caller_access())
        except errors.CoreError as exc:  # before the first frame: a status, as for any call
            await context.abort(exc.code, exc.message, trailing_metadata=rich_status(exc))
        # A heartbeat first: the follower knows at once that the stream is open.
        yield to_pb_frame(follow.Beat(now_us()), self.frames)
        async for frame in self.hub.follow(task, after):
            yield to_pb_frame(frame, self.frames)


class TaskWriterService(writer_service_pb2_grpc.TaskWriterServiceServicer):
    need = auth.Requirement.WRITER

    def __init__(self, core: TaskCore, gate: auth.Gate = auth.OPEN) -> None:
        self.core = core
        self.gate = gate

    @rpc
    async def CreateTask(
        self, request: writer_service_pb2.CreateTaskRequest, context: Ctx
    ) -> writer_service_pb2.CreateTaskResponse:
        scope = _scope(request.scope)
        if not caller_access().allows(scope, request.entity_id):
            raise errors.PermissionDenied(f"this token may not write tasks of {scope.value} {request.entity_id}")
        task = await self.core.create_task(
            NewTask(
                scope=scope,
                entity_id=request.entity_id,
                type=request.type,
                task_id=request.task_id or None,
                parent_id=request.parent_id or None,
                node_name=request.node_name or None,
                instance_id=request.instance_id or None,
                host_id=request.host_id or None,
                request_id=request.request_id or None,
                retention_us=duration_us(request.result_ttl) if request.HasField("result_ttl") else None,
            )
        )
        return writer_service_pb2.CreateTaskResponse(task=to_pb_task(task))

    @rpc
    async def ClaimTask(
        self, request: writer_service_pb2.ClaimTaskRequest, context: Ctx
    ) -> writer_service_pb2.ClaimTaskResponse:
        lease = duration_us(request.lease_duration) if request.HasField("lease_duration") else None
        claim = await self.core.claim(
            request.task_id, request.worker_name, lease, request.lease_id or None, caller_access()
        )
        return writer_service_pb2.ClaimTaskResponse(task=to_pb_task(claim.task), lease_id=claim.lease_id)

    @rpc
    async def Heartbeat(
        self, request: writer_service_pb2.HeartbeatRequest, context: Ctx
    ) -> writer_service_pb2.HeartbeatResponse:
        lease = duration_us(request.lease_duration) if request.HasField("lease_duration") else None
        task = await self.core.heartbeat(request.task_id, request.lease_id, lease, caller_access())
        return writer_service_pb2.HeartbeatResponse(
            lease_expires_at=timestamp(task.lease_expires_at or 0),
            cancel_requested=task.status is Status.CANCELING,
            cancel_forced=task.cancel_forced,
            status=STATUS_TO_PB[task.status],
        )

    async def WatchTask(
        self, request: writer_service_pb2.WatchTaskRequest, context: Ctx
    ) -> AsyncIterator[writer_service_pb2.WatchTaskResponse]:
        await self.gate.admit(context, self.need)
        try:
            async for task in self.core.watch(request.task_id, request.lease_id, caller_access()):
                reply = writer_service_pb2.WatchTaskResponse(
                    status=STATUS_TO_PB[task.status],
                    cancel_requested=task.status is Status.CANCELING,
                    cancel_forced=task.cancel_forced,
                )
                if task.lease_expires_at is not None:
                    reply.lease_expires_at.CopyFrom(timestamp(task.lease_expires_at))
                yield reply
        except errors.CoreError as exc:
            await context.abort(exc.code, exc.message, trailing_metadata=rich_status(exc))

    @rpc
    async def UpdateTask(
        self, request: writer_service_pb2.UpdateTaskRequest, context: Ctx
    ) -> writer_service_pb2.UpdateTaskResponse:
        changes = TaskChanges(
            status=_status(request.status) if request.HasField("status") else None,
            error=from_pb_error(request.error) if request.HasField("error") else None,
            progress=_progress(request.progress) if request.HasField("progress") else None,
            result=_result(request.result) if request.HasField("result") else None,
            node_name=request.node_name if request.HasField("node_name") else None,
            instance_id=request.instance_id if request.HasField("instance_id") else None,
            host_id=request.host_id if request.HasField("host_id") else None,
            in_commit_phase=request.in_commit_phase if request.HasField("in_commit_phase") else None,
            worker_name=request.worker_name if request.HasField("worker_name") else None,
        )
        task = await self.core.update_task(request.task_id, changes, request.lease_id or None, caller_access())
        return writer_service_pb2.UpdateTaskResponse(task=to_pb_task(task))

    @rpc
    async def AppendLogEntries(
        self, request: writer_service_pb2.AppendLogEntriesRequest, context: Ctx
    ) -> writer_service_pb2.AppendLogEntriesResponse:
        entries = [
            NewLogEntry(
                message=e.message,
                fields=struct_to_dict(e.fields) if e.HasField("fields") else None,
                timestamp=from_timestamp(e.timestamp) if e.HasField("timestamp") else None,
                entry_id=e.entry_id or None,
            )
            for e in request.entries
        ]
        ids = await self.core.append_log(
            request.task_id, entries, request.lease_id or None, caller_access(), request.append_id or None
        )
        return writer_service_pb2.AppendLogEntriesResponse(entry_ids=ids)


def _progress(p: task_pb2.TaskProgress) -> Progress:
    return Progress(percent=p.percent, step=p.step, targets=tuple(TargetProgress(t.name, t.step) for t in p.targets))


def _result(r: task_pb2.TaskResult) -> Result:
    return Result(
        resource_id=r.resource_id,
        additional_resource_id=r.additional_resource_id,
        resource=struct_to_dict(r.resource) if r.HasField("resource") else None,
        resource_path=r.resource_path,
        resource_title=r.resource_title,
        additional_info=r.additional_info,
    )
