"""The native gRPC API: `tasktrail.v1.TaskService` (read) and
`tasktrail.v1.TaskWriterService` (write), for tasks of every scope."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format

from tasktrail.api import tails
from tasktrail.api._servicer import Context, GrpcErrors, Surface, caller_access, endpoint, status_code, stream
from tasktrail.api.convert import (
    STATUS_TO_PB,
    duration_us,
    from_pb_error,
    from_timestamp,
    progress_of,
    result_of,
    scope_of,
    status_of,
    timestamp,
    to_pb_entry,
    to_pb_task,
)
from tasktrail.auth.gate import OPEN, Gate
from tasktrail.auth.principal import Requirement
from tasktrail.core import errors, follow
from tasktrail.core.model import Access, LogEntry, NewLogEntry, NewTask, Range, Status, TaskChanges, TaskQuery, now_us
from tasktrail.core.tasks import TaskCore
from tasktrail.core.validation import BOUNDS, check_counts
from tasktrail.protojson import struct_to_dict
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

ERRORS = GrpcErrors()


def _cursor(after_entry_id: str) -> str | None:
    """An entry id to read after. None holds U+0000, and PostgreSQL could not even
    compare one: refused alike on every store."""
    if "\x00" in after_entry_id:
        raise errors.InvalidArgument("after_entry_id may not contain U+0000 (NUL)")
    return after_entry_id or None


# -- page tokens ---------------------------------------------------------------------


def _fingerprint(request: task_service_pb2.ListTasksRequest) -> str:
    key = [request.scope, request.entity_id, sorted(request.statuses), sorted(request.types), request.sort_order]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def encode_page_token(request: task_service_pb2.ListTasksRequest, position: tuple[int, str]) -> str:
    raw = json.dumps({"p": list(position), "f": _fingerprint(request)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(request: task_service_pb2.ListTasksRequest) -> tuple[int, str]:
    token = request.page_token
    if len(token) > BOUNDS.page_token:
        raise errors.InvalidArgument("page_token is not one this server gave")
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


def list_ranges(request: task_service_pb2.ListTasksRequest, access: Access) -> tuple[Range, ...]:
    """The index ranges a ListTasks request reads: what it asks for, within what the caller may see."""
    if request.entity_id and not request.scope:
        raise errors.InvalidArgument("entity_id requires scope")
    if not request.scope:
        return access.ranges()
    scope = scope_of(request.scope)
    narrowed = access.within(scope, request.entity_id or None)
    return narrowed.ranges()


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
        out.error.code = status_code(frame.error).value[0]
        out.error.message = frame.error.message
    return out


def _entries_frame(batch: list[LogEntry]) -> task_service_pb2.FollowTaskLogResponse:
    frame = task_service_pb2.FollowTaskLogResponse()
    frame.entries.entries.extend(to_pb_entry(e) for e in batch)
    return frame


def _entry_json(entry: LogEntry) -> dict[str, Any]:
    """An entry as the REST face shows it: protobuf's JSON, field names kept."""
    return json_format.MessageToDict(to_pb_entry(entry), preserving_proto_field_name=True)


def _time_json(us: int) -> str:
    return timestamp(us).ToJsonString()


def _broken_json(frame: follow.Broken) -> dict[str, Any]:
    return {"code": status_code(frame.error).name, "message": frame.error.message}


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, core: TaskCore, gate: Gate = OPEN, hub: follow.LogHub | None = None) -> None:
        self.core = core
        self.surface = Surface("native", gate, ERRORS, Requirement.READER)
        self.hub = hub or follow.LogHub(core)
        self.frames: follow.BatchCache[task_service_pb2.FollowTaskLogResponse] = follow.BatchCache()
        self.chunks: follow.BatchCache[httpbody_pb2.HttpBody] = follow.BatchCache()

    @endpoint
    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: Context
    ) -> task_service_pb2.GetTaskResponse:
        task = await self.core.get_task(request.task_id, caller_access())
        return task_service_pb2.GetTaskResponse(task=to_pb_task(task))

    @endpoint
    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Context
    ) -> task_service_pb2.ListTasksResponse:
        if request.page_size < 0:
            raise errors.InvalidArgument("page_size must not be negative")
        # Counted before any is read: a request of 30,000 filters costs one comparison.
        check_counts(len(request.statuses), len(request.types))
        limits = self.core.limits
        query = TaskQuery(
            ranges=list_ranges(request, caller_access()),
            statuses=tuple(status_of(s) for s in request.statuses),
            types=tuple(request.types),
            descending=request.sort_order != task_pb2.SORT_ORDER_ASCENDING,
            after=decode_page_token(request) if request.page_token else None,
            limit=min(request.page_size or limits.default_page_size, limits.max_page_size),
        )
        page = await self.core.list_tasks(query)
        token = encode_page_token(request, page.tasks[-1].position) if page.has_more else ""
        return task_service_pb2.ListTasksResponse(tasks=[to_pb_task(t) for t in page.tasks], next_page_token=token)

    @endpoint
    async def GetTaskLog(
        self, request: task_service_pb2.GetTaskLogRequest, context: Context
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

    @endpoint(need=Requirement.OPERATOR)
    async def CancelTask(
        self, request: task_service_pb2.CancelTaskRequest, context: Context
    ) -> task_service_pb2.CancelTaskResponse:
        result = await self.core.cancel(request.task_id, caller_access(), force=request.force)
        return task_service_pb2.CancelTaskResponse(task=to_pb_task(result.task))

    @endpoint
    async def WaitTask(
        self, request: task_service_pb2.WaitTaskRequest, context: Context
    ) -> task_service_pb2.WaitTaskResponse:
        timeout = duration_us(request.timeout) if request.HasField("timeout") else self.core.timing.max_wait
        task = await self.core.wait(request.task_id, timeout, caller_access())
        return task_service_pb2.WaitTaskResponse(task=to_pb_task(task), done=task.status.terminal)

    @stream
    async def StreamTaskLog(
        self, request: task_service_pb2.StreamTaskLogRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """FollowTaskLog as text, for the REST face (the web console reads its SSE)."""
        fmt, last_event_id = tails.choose(context.invocation_metadata())
        # An EventSource's Last-Event-ID is its own resume point: it wins.
        after = _cursor(last_event_id or request.after_entry_id)
        task = await self.hub.open(request.task_id, caller_access())
        chunks = tails.stream(
            self.hub.follow(task, after),
            tails.Writer(fmt),
            _entry_json,
            _time_json,
            lambda status: task_pb2.TaskStatus.Name(STATUS_TO_PB[status]),
            _broken_json,
            now_us(),
            self.chunks,
        )
        async for chunk in chunks:
            yield chunk

    @stream
    async def FollowTaskLog(
        self, request: task_service_pb2.FollowTaskLogRequest, context: Context
    ) -> AsyncIterator[task_service_pb2.FollowTaskLogResponse]:
        # Refused before the first frame: a status, as for any call.
        after = _cursor(request.after_entry_id)
        task = await self.hub.open(request.task_id, caller_access())
        # A heartbeat first: the follower knows at once that the stream is open.
        yield to_pb_frame(follow.Beat(now_us()), self.frames)
        async for frame in self.hub.follow(task, after):
            yield to_pb_frame(frame, self.frames)


class TaskWriterService(writer_service_pb2_grpc.TaskWriterServiceServicer):
    def __init__(self, core: TaskCore, gate: Gate = OPEN) -> None:
        self.core = core
        self.surface = Surface("native", gate, ERRORS, Requirement.WRITER)

    @endpoint
    async def CreateTask(
        self, request: writer_service_pb2.CreateTaskRequest, context: Context
    ) -> writer_service_pb2.CreateTaskResponse:
        scope = scope_of(request.scope)
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

    @endpoint
    async def ClaimTask(
        self, request: writer_service_pb2.ClaimTaskRequest, context: Context
    ) -> writer_service_pb2.ClaimTaskResponse:
        lease = duration_us(request.lease_duration) if request.HasField("lease_duration") else None
        claim = await self.core.claim(
            request.task_id, request.worker_name, lease, request.lease_id or None, caller_access()
        )
        return writer_service_pb2.ClaimTaskResponse(task=to_pb_task(claim.task), lease_id=claim.lease_id)

    @endpoint
    async def Heartbeat(
        self, request: writer_service_pb2.HeartbeatRequest, context: Context
    ) -> writer_service_pb2.HeartbeatResponse:
        lease = duration_us(request.lease_duration) if request.HasField("lease_duration") else None
        task = await self.core.heartbeat(request.task_id, request.lease_id, lease, caller_access())
        return writer_service_pb2.HeartbeatResponse(
            lease_expires_at=timestamp(task.lease_expires_at or 0),
            cancel_requested=task.status is Status.CANCELING,
            cancel_forced=task.cancel_forced,
            status=STATUS_TO_PB[task.status],
        )

    @stream
    async def WatchTask(
        self, request: writer_service_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[writer_service_pb2.WatchTaskResponse]:
        async for task in self.core.watch(request.task_id, request.lease_id, caller_access()):
            reply = writer_service_pb2.WatchTaskResponse(
                status=STATUS_TO_PB[task.status],
                cancel_requested=task.status is Status.CANCELING,
                cancel_forced=task.cancel_forced,
            )
            if task.lease_expires_at is not None:
                reply.lease_expires_at.CopyFrom(timestamp(task.lease_expires_at))
            yield reply

    @endpoint
    async def UpdateTask(
        self, request: writer_service_pb2.UpdateTaskRequest, context: Context
    ) -> writer_service_pb2.UpdateTaskResponse:
        changes = TaskChanges(
            status=status_of(request.status) if request.HasField("status") else None,
            error=from_pb_error(request.error) if request.HasField("error") else None,
            progress=progress_of(request.progress) if request.HasField("progress") else None,
            result=result_of(request.result) if request.HasField("result") else None,
            node_name=request.node_name if request.HasField("node_name") else None,
            instance_id=request.instance_id if request.HasField("instance_id") else None,
            host_id=request.host_id if request.HasField("host_id") else None,
            in_commit_phase=request.in_commit_phase if request.HasField("in_commit_phase") else None,
            worker_name=request.worker_name if request.HasField("worker_name") else None,
        )
        task = await self.core.update_task(request.task_id, changes, request.lease_id or None, caller_access())
        return writer_service_pb2.UpdateTaskResponse(task=to_pb_task(task))

    @endpoint
    async def AppendLogEntries(
        self, request: writer_service_pb2.AppendLogEntriesRequest, context: Context
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
