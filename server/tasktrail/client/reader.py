"""Reader clients, a sync and an async twin.

Get, list (paging by itself), log (every page), wait, cancel and follow.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType

import grpc
from grpc import aio

from tasktrail.client import _base
from tasktrail.client._base import TaskStatus
from tasktrail.client.errors import TasktrailError, Unavailable
from tasktrail.client.policies import RetryPolicy, Timeouts
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc


class FollowError(TasktrailError):
    """A follow that cannot go on: the task is gone, or the caller may not see it."""

    def __init__(self, code: grpc.StatusCode | None, message: str) -> None:
        super().__init__(message, status=code or grpc.StatusCode.UNKNOWN)


# A follow resumes by itself after these: a dropped connection, a server stopping or restarting.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
DEFAULT_RESUME = RetryPolicy(initial=0.2, maximum=5.0, deadline=300.0, codes=RESUMABLE)


class _FollowBase:
    """What a sync and an async follow share: where they are, and what ends them."""

    def __init__(self, task_id: str, after_entry_id: str | None, resume: RetryPolicy) -> None:
        self.task_id = task_id
        # The last entry received: a resume continues right after it.
        self.last_entry_id = after_entry_id or ""
        # The task's final status, once the follow has ended.
        self.status: TaskStatus | None = None
        self.resumes = 0
        self.resume = resume

    def request(self) -> task_service_pb2.FollowTaskLogRequest:
        return task_service_pb2.FollowTaskLogRequest(task_id=self.task_id, after_entry_id=self.last_entry_id)

    def take(self, frame: task_service_pb2.FollowTaskLogResponse) -> list[task_pb2.LogEntry] | None:
        """The entries of a frame; None once the follow has ended. An error frame raises."""
        kind = frame.WhichOneof("frame")
        if kind == "entries":
            entries = list(frame.entries.entries)
            if entries:
                self.last_entry_id = entries[-1].entry_id
            return entries
        if kind == "end":
            self.status = TaskStatus(frame.end.task_status)
            return None
        if kind == "error":
            code = grpc.StatusCode.UNAVAILABLE if frame.error.code == 14 else None
            raise _Interrupted(code, frame.error.message)
        return []  # a heartbeat

    def retry_after(self, code: grpc.StatusCode | None, started: float, delays: Iterator[float]) -> float:
        """How long to wait before resuming; raises when the follow cannot be resumed."""
        delay = next(delays)
        if code not in self.resume.codes or time.monotonic() + delay - started > self.resume.deadline:
            raise FollowError(code, f"the follow of task {self.task_id} cannot go on")
        self.resumes += 1
        return delay


class _Interrupted(Exception):
    def __init__(self, code: grpc.StatusCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code


class _ReaderBase:
    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.target = target or _base.default_target()
        self.token = token if token is not None else _base.default_token()
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self._metadata = _base.metadata(self.token)


class TaskClient(_ReaderBase):
    """The sync reader client."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        super().__init__(target, token, retry=retry, timeouts=timeouts)
        self._channel = grpc.insecure_channel(self.target, options=_base.CHANNEL_OPTIONS)
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def connect(self, timeout: float = 3.0) -> None:
        """Connect now, and fail fast: a call retries for as long as its policy allows.

        Args:
            timeout: Seconds to wait for a connection.

        Raises:
            Unavailable: No server answered at the target within `timeout`.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"no tasktrail server answered at {self.target} within {timeout:g} s") from None

    def get(self, task_id: str) -> task_pb2.Task:
        """One task.

        Raises:
            NotFound: No such task, or the token does not cover it.
        """
        request = task_service_pb2.GetTaskRequest(task_id=task_id)
        reply = _base.call_sync(
            lambda: self._stub.GetTask(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
        )
        return reply.task

    def list(
        self,
        scope: str | int | None = None,
        entity_id: str | None = None,
        *,
        statuses: Sequence[str | int] = (),
        types: Sequence[str] = (),
        ascending: bool = False,
        page_size: int = 100,
    ) -> Iterator[task_pb2.Task]:
        """Every matching task, fetching pages as the iteration needs them."""
        request = _base.list_request(scope, entity_id, statuses, types, ascending, page_size)
        while True:
            page = _base.call_sync(
                lambda: self._stub.ListTasks(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
            )
            yield from page.tasks
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def log(self, task_id: str, after_entry_id: str | None = None, page_size: int = 0) -> Iterator[task_pb2.LogEntry]:
        """Every entry after `after_entry_id` that exists now, page after page."""
        after = after_entry_id or ""
        while True:
            request = task_service_pb2.GetTaskLogRequest(task_id=task_id, after_entry_id=after, page_size=page_size)
            call = functools.partial(
                self._stub.GetTaskLog, request, timeout=self.timeouts.call, metadata=self._metadata
            )
            page = _base.call_sync(call, self.retry)
            yield from page.entries
            if not page.has_more:
                return
            after = page.last_entry_id

    def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.Task:
        """The task once it has ended, or as it is when `timeout` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.timeouts.wait if deadline is None else min(self.timeouts.wait, deadline - time.monotonic())
            request = _base.wait_request(task_id, left)
            wait = functools.partial(
                self._stub.WaitTask, request, timeout=left + self.timeouts.call, metadata=self._metadata
            )
            reply = _base.call_sync(wait, self.retry)
            if reply.done or (deadline is not None and time.monotonic() >= deadline):
                return reply.task

    def cancel(self, task_id: str, force: bool = False) -> task_pb2.Task:
        """Ask for a task to be canceled; the task as the request left it (CANCELING).

        Args:
            task_id: The task.
            force: Stop it even in its commit phase.

        Raises:
            FailedPrecondition: The task has ended, or is in its commit phase without `force`.
        """
        request = task_service_pb2.CancelTaskRequest(task_id=task_id, force=force)
        reply = _base.call_sync(
            lambda: self._stub.CancelTask(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
        )
        return reply.task

    def follow(
        self, task_id: str, after_entry_id: str | None = None, *, resume: RetryPolicy = DEFAULT_RESUME
    ) -> Follow:
        """Follow a task's log live.

        Args:
            task_id: The task.
            after_entry_id: Start after this entry (None: from the first).
            resume: How a dropped connection or a restarting server is retried.

        Returns:
            An iterable of every entry as it is written, until the task ends (then
            its `.status` is set); after a dropped connection or a server restart
            it resumes by itself, with no entry lost or repeated.
        """
        return Follow(self, task_id, after_entry_id, resume)


class AsyncTaskClient(_ReaderBase):
    """The async reader client (grpc.aio)."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        super().__init__(target, token, retry=retry, timeouts=timeouts)
        self._channel = aio.insecure_channel(self.target, options=_base.CHANNEL_OPTIONS)
        self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)

    async def __aenter__(self) -> AsyncTaskClient:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def get(self, task_id: str) -> task_pb2.Task:
        """One task (see `TaskClient.get`)."""
        request = task_service_pb2.GetTaskRequest(task_id=task_id)
        reply = await _base.call_async(
            lambda: self._stub.GetTask(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
        )
        return reply.task

    async def list(
        self,
        scope: str | int | None = None,
        entity_id: str | None = None,
        *,
        statuses: Sequence[str | int] = (),
        types: Sequence[str] = (),
        ascending: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[task_pb2.Task]:
        """Every matching task, newest first (see `TaskClient.list`)."""
        request = _base.list_request(scope, entity_id, statuses, types, ascending, page_size)
        while True:
            page = await _base.call_async(
                lambda: self._stub.ListTasks(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
            )
            for task in page.tasks:
                yield task
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def log(
        self, task_id: str, after_entry_id: str | None = None, page_size: int = 0
    ) -> AsyncIterator[task_pb2.LogEntry]:
        """Every entry after `after_entry_id` that exists now (see `TaskClient.log`)."""
        after = after_entry_id or ""
        while True:
            request = task_service_pb2.GetTaskLogRequest(task_id=task_id, after_entry_id=after, page_size=page_size)
            call = functools.partial(
                self._stub.GetTaskLog, request, timeout=self.timeouts.call, metadata=self._metadata
            )
            page = await _base.call_async(call, self.retry)
            for entry in page.entries:
                yield entry
            if not page.has_more:
                return
            after = page.last_entry_id

    async def wait(self, task_id: str, timeout: float | None = None) -> task_pb2.Task:
        """The task once it has ended, or as it is after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.timeouts.wait if deadline is None else min(self.timeouts.wait, deadline - time.monotonic())
            request = _base.wait_request(task_id, left)
            wait = functools.partial(
                self._stub.WaitTask, request, timeout=left + self.timeouts.call, metadata=self._metadata
            )
            reply = await _base.call_async(wait, self.retry)
            if reply.done or (deadline is not None and time.monotonic() >= deadline):
                return reply.task

    async def cancel(self, task_id: str, force: bool = False) -> task_pb2.Task:
        """Ask for a task to be canceled (see `TaskClient.cancel`)."""
        request = task_service_pb2.CancelTaskRequest(task_id=task_id, force=force)
        reply = await _base.call_async(
            lambda: self._stub.CancelTask(request, timeout=self.timeouts.call, metadata=self._metadata), self.retry
        )
        return reply.task

    def follow(
        self, task_id: str, after_entry_id: str | None = None, *, resume: RetryPolicy = DEFAULT_RESUME
    ) -> AsyncFollow:
        """Follow a task's log live.

        Args:
            task_id: The task.
            after_entry_id: Start after this entry (None: from the first).
            resume: How a dropped connection or a restarting server is retried.

        Returns:
            An iterable of every entry as it is written, until the task ends (then
            its `.status` is set); after a dropped connection or a server restart
            it resumes by itself, with no entry lost or repeated.
        """
        return AsyncFollow(self, task_id, after_entry_id, resume)


class Follow(_FollowBase):
    """A live follow of one log (iterate it); `status` is the task's end once it ended."""

    def __init__(self, client: TaskClient, task_id: str, after: str | None, resume: RetryPolicy) -> None:
        super().__init__(task_id, after, resume)
        self.client = client

    def __iter__(self) -> Iterator[task_pb2.LogEntry]:
        started, delays = time.monotonic(), self.resume.delays()
        while True:
            try:
                for frame in self.client._stub.FollowTaskLog(self.request(), metadata=self.client._metadata):
                    entries = self.take(frame)
                    if entries is None:
                        return
                    if entries:
                        started, delays = time.monotonic(), self.resume.delays()  # progress: a fresh budget
                    yield from entries
                code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE  # the stream ended without its end frame
            except _Interrupted as interrupted:
                code = interrupted.code
            except grpc.RpcError as error:
                code = _base.code_of(error)
                if code not in self.resume.codes:
                    raise FollowError(code, str(error.details() if hasattr(error, "details") else error)) from error
            time.sleep(self.retry_after(code, started, delays))


class AsyncFollow(_FollowBase):
    """A live follow of one log (`async for` it); `status` is the task's end once it ended."""

    def __init__(self, client: AsyncTaskClient, task_id: str, after: str | None, resume: RetryPolicy) -> None:
        super().__init__(task_id, after, resume)
        self.client = client

    async def __aiter__(self) -> AsyncIterator[task_pb2.LogEntry]:
        started, delays = time.monotonic(), self.resume.delays()
        while True:
            try:
                call = self.client._stub.FollowTaskLog(self.request(), metadata=self.client._metadata)
                async for frame in call:
                    entries = self.take(frame)
                    if entries is None:
                        return
                    if entries:
                        started, delays = time.monotonic(), self.resume.delays()
                    for entry in entries:
                        yield entry
                code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
            except _Interrupted as interrupted:
                code = interrupted.code
            except grpc.RpcError as error:
                code = _base.code_of(error)
                if code not in self.resume.codes:
                    raise FollowError(code, str(error.details() if hasattr(error, "details") else error)) from error
            await asyncio.sleep(self.retry_after(code, started, delays))
