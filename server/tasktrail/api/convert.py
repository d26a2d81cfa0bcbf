"""Core objects as the native API's protobuf messages, and back."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from tasktrail.core import errors
from tasktrail.core.model import (
    ErrorDetail,
    LogEntry,
    Progress,
    Result,
    Scope,
    Status,
    TargetProgress,
    Task,
    TaskError,
)
from tasktrail.protojson import struct_to_dict
from tasktrail.v1 import task_pb2

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


def duration_us(value: duration_pb2.Duration) -> int:
    return value.seconds * 1_000_000 + value.nanos // 1000


def scope_of(value: int) -> Scope:
    scope = SCOPE_FROM_PB.get(task_pb2.Scope.ValueType(value))
    if scope is None:
        raise errors.InvalidArgument("scope is required")
    return scope


def status_of(value: int) -> Status:
    status = STATUS_FROM_PB.get(task_pb2.TaskStatus.ValueType(value))
    if status is None:
        raise errors.InvalidArgument(f"unknown status {value}")
    return status


def progress_of(p: task_pb2.TaskProgress) -> Progress:
    return Progress(percent=p.percent, step=p.step, targets=tuple(TargetProgress(t.name, t.step) for t in p.targets))


def result_of(r: task_pb2.TaskResult) -> Result:
    return Result(
        resource_id=r.resource_id,
        additional_resource_id=r.additional_resource_id,
        resource=struct_to_dict(r.resource) if r.HasField("resource") else None,
        resource_path=r.resource_path,
        resource_title=r.resource_title,
        additional_info=r.additional_info,
    )
