"""The writer client and the worker helper.

writer = AsyncTaskWriter(token=...)
task = await writer.create("database", "storefront", "node_backup")
async with writer.task(task.task_id) as t:      # claims it: RUNNING, under a lease
    t.log("P00   INFO: backup command begin")  # batched, flushed in the background
    if t.cancel_requested:                    # a cancel reached the worker
        raise TaskCanceled()                  # ... ends the task as CANCELED
    await t.commit_phase()                    # from here on only a forced cancel stops it
# a normal exit completes the task; an exception fails it with its message
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from grpc import aio

from tasktrail.client import _base
from tasktrail.client.policies import RetryPolicy, Timeouts, WorkerPolicy
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc

log = logging.getLogger(__name__)


class TaskCanceled(Exception):
    """Raise it inside `async with writer.task(...)` to end the task as CANCELED."""


class TaskFailed(Exception):
    """Raise it inside `async with writer.task(...)` to end the task as FAILED.

    Args:
        code: The error code the dialects show (`internal_error`, `GENERAL_ERROR`…).
        message: What went wrong, for people.
        http_status: The HTTP status the cloud API shows (its "404 NOT_FOUND").
        details: Per-target errors, as (target, code, message): one per cluster.
        additional_info: A machine hint the cloud API shows.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int = 0,
        details: tuple[tuple[str, str, str], ...] = (),
        additional_info: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.details = details
        self.additional_info = additional_info

    def to_pb(self) -> task_pb2.TaskError:
        """The error as the writer API takes it."""
        return task_pb2.TaskError(
            code=self.code,
            message=self.message,
            http_status=self.http_status,
            details=[task_pb2.TaskErrorDetail(target=t, code=c, message=m) for t, c, m in self.details],
        )


class LeaseLost(Exception):
    """The worker no longer holds its task: its lease lapsed, the task ended elsewhere."""


class LogRefused(Exception):
    """Log lines that will never reach the log: the task does not end COMPLETED.

    The server refused them for good, or could not be reached to take them
    before the block ended.

    Attributes:
        lines: How many logged lines did not reach the log.
    """

    def __init__(self, message: str, lines: int) -> None:
        super().__init__(message)
        self.lines = lines


# What the server takes of a log line (docs/security.md): checked where the line is logged.
MAX_MESSAGE = 64 * 1024
MAX_FIELDS = 64 * 1024
# Codes after which an append will never succeed: the lines are lost, and the block says so.
_FOR_GOOD = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def default_worker_name() -> str:
    """`host:pid`: a name that tells an operator where a worker runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _seconds(value: float) -> Any:
    from google.protobuf import duration_pb2

    duration = duration_pb2.Duration()
    duration.FromMilliseconds(int(value * 1000))
    return duration


class AsyncTaskWriter:
    """Creates tasks, and runs them as a worker."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        worker_name: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        policy: WorkerPolicy | None = None,
    ) -> None:
        self.target = target or _base.default_target()
        token = token if token is not None else _base.default_token()
        self.metadata = _base.metadata(token)
        self.worker_name = worker_name or default_worker_name()
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.policy = policy or WorkerPolicy()
        self._channel = aio.insecure_channel(self.target, options=_base.CHANNEL_OPTIONS)
        self.stub = writer_service_pb2_grpc.TaskWriterServiceStub(self._channel)

    async def __aenter__(self) -> AsyncTaskWriter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def call(self, method: Any, request: Any, *, retry: bool = True) -> Any:
        """One writer call on this writer's channel, with its token and retry policy."""
        return await _base.call_async(
            lambda: method(request, timeout=self.timeouts.call, metadata=self.metadata),
            self.retry if retry else RetryPolicy(deadline=0.0, codes=frozenset()),
        )

    async def create(
        self,
        scope: str | int,
        entity_id: str,
        type: str,
        *,
        task_id: str | None = None,
        request_id: str | None = None,
        parent_id: str | None = None,
        node_name: str | None = None,
        instance_id: str | None = None,
        host_id: str | None = None,
        result_ttl: float | None = None,
    ) -> task_pb2.Task:
        """A new PENDING task. Retried safely: the request carries a request_id."""
        request = writer_service_pb2.CreateTaskRequest(
            scope=_base.scope_value(scope),
            entity_id=entity_id,
            type=type,
            task_id=task_id or "",
            request_id=request_id or str(uuid.uuid4()),
            parent_id=parent_id or "",
            node_name=node_name or "",
            instance_id=instance_id or "",
            host_id=host_id or "",
        )
        if result_ttl is not None:
            request.result_ttl.CopyFrom(_seconds(result_ttl))
        reply: writer_service_pb2.CreateTaskResponse = await self.call(self.stub.CreateTask, request)
        return reply.task

    def task(self, task_id: str, *, policy: WorkerPolicy | None = None) -> WorkerTask:
        """Run a task as its worker: `async with writer.task(task_id) as t: ...`."""
        return WorkerTask(self, task_id, policy or self.policy)


class WorkerTask:
    """A claimed task, held by heartbeats until the `async with` block ends."""

    def __init__(self, writer: AsyncTaskWriter, task_id: str, policy: WorkerPolicy) -> None:
        self.writer = writer
        self.task_id = task_id
        self.policy = policy
        self.lease_id = str(uuid.uuid4())
        self.task: task_pb2.Task | None = None
        self.cancel_forced = False
        self.lost = False
        self._canceled = asyncio.Event()
        self._pending: list[task_pb2.LogEntry] = []
        self._flush_now = asyncio.Event()
        # One flush at a time, so that batches reach the log in the order they were written.
        self._flushing = asyncio.Lock()
        self._closing = False
        # The batch being sent, with its append_id: sent again exactly as it was until
        # the server acknowledges it (lines logged meanwhile wait for the next batch).
        self._inflight: tuple[list[task_pb2.LogEntry], str] | None = None
        # Why the log stopped taking lines for good, once it did.
        self._refused: str | None = None
        self._background: list[asyncio.Task[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._result: task_pb2.TaskResult | None = None

    # -- what the work sees ---------------------------------------------------------

    @property
    def cancel_requested(self) -> bool:
        """Whether a cancel has reached the worker."""
        return self._canceled.is_set()

    async def canceled(self) -> None:
        """Returns once a cancel has reached the worker."""
        await self._canceled.wait()

    def raise_if_canceled(self) -> None:
        """Raise `TaskCanceled` if a cancel has reached the worker (ending the task as CANCELED)."""
        if self.cancel_requested:
            raise TaskCanceled("a cancel was requested")

    def log(self, message: str, **fields: Any) -> None:
        """Queue a log line, stamped with the time it is logged; lines go out in batches.

        Raises:
            ValueError: The server would never take the line (a NUL, or past its size limit).
            LogRefused: The server refused earlier lines for good: this log takes no more.
        """
        if self._refused is not None:
            raise LogRefused(self._refused, len(self._pending))
        if len(message) > MAX_MESSAGE:
            raise ValueError(f"a log message is at most {MAX_MESSAGE} characters")
        if "\x00" in message:
            raise ValueError("a log message may not contain U+0000 (NUL)")
        entry = task_pb2.LogEntry(message=message)
        entry.timestamp.GetCurrentTime()
        if fields:
            if len(json.dumps(fields, default=str)) > MAX_FIELDS:
                raise ValueError(f"a log line's fields are at most {MAX_FIELDS} characters of JSON")
            entry.fields.update(fields)
        self._pending.append(entry)
        if len(self._pending) >= self.policy.batch_size:
            self._flush_now.set()

    async def flush(self) -> None:
        """Send every queued log line now.

        Raises:
            LogRefused: The server refused lines for good.
            TasktrailError: The server could not be reached within the retry policy's deadline.
        """
        async with self._flushing:
            if self._refused is not None:
                raise LogRefused(self._refused, len(self._pending))
            while self._inflight is not None or self._pending:
                if self._inflight is None:
                    # Its append_id makes the batch safe to send again: each line lands once.
                    batch = self._pending[: self.policy.batch_size]
                    del self._pending[: len(batch)]
                    self._inflight = (batch, str(uuid.uuid4()))
                entries, append_id = self._inflight
                request = writer_service_pb2.AppendLogEntriesRequest(
                    task_id=self.task_id, entries=entries, lease_id=self.lease_id, append_id=append_id
                )
                try:
                    await self.writer.call(self.writer.stub.AppendLogEntries, request)
                except grpc.RpcError as error:
                    if _base.code_of(error) in _FOR_GOOD:
                        lost = len(entries) + len(self._pending)
                        self._refused = f"the server refused {lost} log lines of task {self.task_id}: {error}"
                        raise LogRefused(self._refused, lost) from error
                    raise
                self._inflight = None

    async def progress(
        self, percent: float | None = None, step: str | None = None, targets: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Report progress: a percentage, a step, and per-target steps (one per cluster)."""
        progress = task_pb2.TaskProgress(
            percent=percent or 0.0,
            step=step or "",
            targets=[task_pb2.TargetProgress(name=n, step=s) for n, s in targets],
        )
        await self._update(writer_service_pb2.UpdateTaskRequest(progress=progress))

    async def set(
        self, node_name: str | None = None, instance_id: str | None = None, host_id: str | None = None
    ) -> None:
        """Set context fields."""
        await self._update(
            writer_service_pb2.UpdateTaskRequest(node_name=node_name, instance_id=instance_id, host_id=host_id)
        )

    async def commit_phase(self) -> None:
        """From here on a graceful cancel is refused; only a forced one stops the task."""
        await self.flush()
        await self._update(writer_service_pb2.UpdateTaskRequest(in_commit_phase=True))

    def result(
        self,
        resource_id: str = "",
        additional_resource_id: str = "",
        resource: dict[str, Any] | None = None,
        resource_path: str = "",
        resource_title: str = "",
    ) -> None:
        """Set what the task produced; it is sent with its completion.

        Args:
            resource_id: The resource's id (the cloud API's `resourceId`).
            additional_resource_id: A second id (`additionalResourceId`).
            resource: A free JSON object describing the resource.
            resource_path: An API path such as /v1/subscriptions/77899: the cloud API's resource link.
            resource_title: The link's title.
        """
        self._result = task_pb2.TaskResult(
            resource_id=resource_id,
            additional_resource_id=additional_resource_id,
            resource_path=resource_path,
            resource_title=resource_title,
        )
        if resource is not None:
            self._result.resource.update(resource)

    # -- the protocol ---------------------------------------------------------------------

    async def __aenter__(self) -> WorkerTask:
        request = writer_service_pb2.ClaimTaskRequest(
            task_id=self.task_id,
            worker_name=self.writer.worker_name,
            lease_duration=_seconds(self.policy.lease),
            lease_id=self.lease_id,
        )
        reply = await self.writer.call(self.writer.stub.ClaimTask, request)  # retried: the lease_id makes it idempotent
        self.task = reply.task
        self._background = [
            asyncio.create_task(self._heartbeats(), name=f"heartbeat {self.task_id}"),
            asyncio.create_task(self._watch(), name=f"watch {self.task_id}"),
        ]
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"log {self.task_id}")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: TracebackType | None
    ) -> bool:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # The log flusher is not cut off mid-append: it stops after the batch it is sending.
        self._closing = True
        self._flush_now.set()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self.lost:
            return False
        try:
            await self.flush()
        except (LogRefused, grpc.RpcError) as lost:
            if error is None:
                # Never COMPLETED without lines the block logged: FAILED, saying why, where the
                # server still takes it (or the lease lapses and the server fails the task).
                failed = writer_service_pb2.UpdateTaskRequest(status=task_pb2.TASK_STATUS_FAILED)
                failed.error.CopyFrom(task_pb2.TaskError(code="log_refused", message=str(lost)[:4096]))
                with contextlib.suppress(grpc.RpcError):
                    await self._update(failed)
                if isinstance(lost, LogRefused):
                    raise
                raise LogRefused(f"log lines could not be delivered: {lost}", len(self._pending)) from lost
            # The block failed anyway: it ends FAILED with its own error, below.
        end = writer_service_pb2.UpdateTaskRequest()
        if error is None:
            end.status = task_pb2.TASK_STATUS_COMPLETED
            if self._result is not None:
                end.result.CopyFrom(self._result)
        elif self.cancel_requested and isinstance(error, TaskCanceled | asyncio.CancelledError):
            end.status = task_pb2.TASK_STATUS_CANCELED
        elif isinstance(error, TaskFailed):
            end.status = task_pb2.TASK_STATUS_FAILED
            end.error.CopyFrom(error.to_pb())
            if error.additional_info:
                end.result.additional_info = error.additional_info
        else:
            end.status = task_pb2.TASK_STATUS_FAILED
            end.error.CopyFrom(
                task_pb2.TaskError(code=type(error).__name__, message=str(error) or type(error).__name__)
            )
        await self._update(end)
        # A cancel carried out is the end the caller asked for: it does not propagate.
        return isinstance(error, TaskCanceled | TaskFailed)

    async def _update(self, request: writer_service_pb2.UpdateTaskRequest) -> None:
        request.task_id = self.task_id
        request.lease_id = self.lease_id
        reply = await self.writer.call(self.writer.stub.UpdateTask, request)
        self.task = reply.task

    def _heard(self, cancel_requested: bool, forced: bool) -> None:
        if cancel_requested and not self._canceled.is_set():
            self.cancel_forced = forced
            self._canceled.set()

    async def _heartbeats(self) -> None:
        interval = self.policy.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            request = writer_service_pb2.HeartbeatRequest(task_id=self.task_id, lease_id=self.lease_id)
            try:
                reply = await self.writer.call(self.writer.stub.Heartbeat, request)
            except grpc.RpcError as error:
                if _base.code_of(error) == grpc.StatusCode.FAILED_PRECONDITION:
                    self.lost = True
                    log.warning("task %s: lease lost (%s)", self.task_id, error)
                    self._canceled.set()  # whatever the work waits for, it must stop
                    return
                log.warning("task %s: heartbeat failed, retrying: %s", self.task_id, error)
                continue
            self._heard(reply.cancel_requested, reply.cancel_forced)

    async def _watch(self) -> None:
        """The watch stream tells of a cancel at once; heartbeats are the fallback."""
        request = writer_service_pb2.WatchTaskRequest(task_id=self.task_id, lease_id=self.lease_id)
        while True:
            try:
                async for event in self.writer.stub.WatchTask(request, metadata=self.writer.metadata):
                    self._heard(event.cancel_requested, event.cancel_forced)
                    if event.status in _base.TERMINAL:
                        return
            except grpc.RpcError as error:
                if _base.code_of(error) == grpc.StatusCode.FAILED_PRECONDITION:
                    return
            await asyncio.sleep(min(1.0, self.policy.heartbeat_interval))

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.policy.flush_interval)
            self._flush_now.clear()
            if self._closing:  # __aexit__ sends what is left itself
                return
            try:
                await self.flush()
            except LogRefused as refused:
                log.error("task %s: %s", self.task_id, refused)
                return  # the work's next log() raises it
            except grpc.RpcError as error:
                log.warning("task %s: log flush failed, will try again: %s", self.task_id, error)
