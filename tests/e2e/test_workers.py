"""The worker protocol with real worker processes (tests/support/workers/worker.py, on
the SDK) against the real stack; durations shortened through settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tasktrail.client import AsyncTaskWriter, TaskClient
from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2
from tests.support.databases import rows_of
from tests.support.stack import ROOT, Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("workers")),
        "--no-sample",
        "--lease-check-interval",
        "0.1",
        "--lease-min",
        "0.1",
        "--sweep-interval",
        "0.2",
    )
    yield running
    stop_stack(running)


class Worker:
    def __init__(self, stack: Stack, task_id: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.workers.worker", stack.grpc_target, stack.token, task_id, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.005)
        raise AssertionError(f"worker never said {prefix!r}: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def worker_processes() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def create(stack: Stack, **kw: object) -> str:
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="wk", type="update", **kw)  # type: ignore[arg-type]
    return str(stack.writer.CreateTask(request, timeout=10).task.task_id)


def get(stack: Stack, task_id: str) -> task_pb2.Task:
    return stack.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=10).task


def until(stack: Stack, task_id: str, status: int, timeout: float = 10.0) -> tuple[task_pb2.Task, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        task = get(stack, task_id)
        if task.status == status:
            return task, time.monotonic() - started
        time.sleep(0.005)
    raise AssertionError(f"task {task_id} never reached {status}: {get(stack, task_id)}")


def messages(stack: Stack, task_id: str) -> list[str]:
    with TaskClient(stack.grpc_target, stack.token) as client:
        return [e.message for e in client.log(task_id)]


def test_a_killed_worker_leaves_a_failed_task_after_its_lease(workers: Stack, worker_processes: list[Worker]) -> None:
    task_id = create(workers)
    worker = Worker(workers, task_id, "--lease", "1.0", "--heartbeat", "0.25")
    worker_processes.append(worker)
    lease_id = worker.expect("claimed ").split()[1]
    time.sleep(0.3)
    assert get(workers, task_id).status == task_pb2.TASK_STATUS_RUNNING
    os.kill(worker.proc.pid, signal.SIGKILL)
    failed, waited = until(workers, task_id, task_pb2.TASK_STATUS_FAILED)
    # The last heartbeat was at most 0.25 s before the kill; the lease ran 1 s from
    # it, and the reaper waits 1 s past it (--lease-grace) and looks every second.
    assert 1.6 < waited < 4.0, waited
    assert failed.error.code == "lease_expired"
    assert "test-worker stopped heartbeating" in failed.error.message
    log = messages(workers, task_id)
    assert log[-1].startswith("worker lost: test-worker stopped heartbeating and its lease expired at ")
    assert any(m.startswith("working, step") for m in log)
    # A late write from the lost worker is refused.
    with pytest.raises(grpc.RpcError) as late:
        workers.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(
                task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED, lease_id=lease_id
            ),
            timeout=10,
        )
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError):
        workers.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(
                task_id=task_id, lease_id=lease_id, entries=[task_pb2.LogEntry(message="too late")]
            ),
            timeout=10,
        )


def test_a_second_claim_is_refused(workers: Stack, worker_processes: list[Worker]) -> None:
    task_id = create(workers)
    worker = Worker(workers, task_id, "--lease", "5")
    worker_processes.append(worker)
    worker.expect("claimed ")
    with pytest.raises(grpc.RpcError) as second:
        workers.writer.ClaimTask(writer_service_pb2.ClaimTaskRequest(task_id=task_id, worker_name="other"), timeout=10)
    assert second.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "held by test-worker" in (second.value.details() or "")


def test_a_cancel_reaches_a_running_worker_within_one_heartbeat(workers: Stack, worker_processes: list[Worker]) -> None:
    task_id = create(workers)
    worker = Worker(workers, task_id, "--lease", "6", "--heartbeat", "2")
    worker_processes.append(worker)
    worker.expect("claimed ")
    reply = httpx.get(f"{workers.rest}/v1/databases/wk/tasks/{task_id}/cancel", timeout=10)
    assert (reply.status_code, reply.json()["status"]) == (200, "canceling")
    canceled, waited = until(workers, task_id, task_pb2.TASK_STATUS_CANCELED)
    assert waited < 2.0  # within one heartbeat interval (the watch stream tells the worker at once)
    assert worker.expect("cancel ") == "cancel graceful"
    assert worker.proc.wait(10) == 0
    log = messages(workers, task_id)
    assert "task is canceling" in log
    assert log[-1] == "task successfully canceled"
    assert canceled.HasField("completed_at")


def test_the_commit_phase_refuses_a_graceful_cancel(workers: Stack, worker_processes: list[Worker]) -> None:
    task_id = create(workers)
    worker = Worker(workers, task_id, "--lease", "6", "--commit")
    worker_processes.append(worker)
    worker.expect("commit phase")
    with pytest.raises(grpc.RpcError) as refused:
        workers.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reply = httpx.get(f"{workers.rest}/v1/databases/wk/tasks/{task_id}/cancel", timeout=10)
    assert (reply.status_code, reply.json()) == (
        400,
        {"name": "invalid_input", "message": "task is in its commit phase and cannot be cancelled"},
    )
    assert get(workers, task_id).status == task_pb2.TASK_STATUS_RUNNING
    forced = workers.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id, force=True), timeout=10)
    assert (forced.task.status, forced.task.cancel_forced) == (task_pb2.TASK_STATUS_CANCELING, True)
    assert worker.expect("cancel ") == "cancel forced"
    until(workers, task_id, task_pb2.TASK_STATUS_CANCELED)
    with TaskClient(workers.grpc_target, workers.token) as client:
        canceling = [e for e in client.log(task_id) if e.message == "task is canceling"]
    assert canceling[0].fields["forced"] is True


@pytest.mark.anyio
async def test_a_retried_create_returns_the_same_task(workers: Stack) -> None:
    async with AsyncTaskWriter(workers.grpc_target, workers.token) as writer:
        request_id = str(uuid.uuid4())
        first = await writer.create("database", "wk", "create", request_id=request_id)
        again = await writer.create("database", "wk", "create", request_id=request_id)
        assert again.task_id == first.task_id
        assert again.created_at == first.created_at
        with pytest.raises(grpc.RpcError) as other:
            await writer.create("database", "wk", "delete", request_id=request_id)
        assert other.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_task_expires_at_its_expire_at_and_is_swept(workers: Stack) -> None:
    task_id = create(workers, result_ttl={"seconds": 1})
    workers.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
    )
    done = workers.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
    ).task
    expire_at = done.expire_at.seconds + done.expire_at.nanos / 1e9
    completed_at = done.completed_at.seconds + done.completed_at.nanos / 1e9
    assert expire_at - completed_at == pytest.approx(1.0)
    rest = f"{workers.rest}/v1/databases/wk/tasks/{task_id}"
    time.sleep(max(0.0, expire_at - 0.3 - time.time()))
    assert httpx.get(rest, timeout=10).status_code == 200
    assert httpx.get(rest + "/log", timeout=10).status_code == 200
    time.sleep(max(0.0, expire_at + 0.02 - time.time()))
    assert httpx.get(rest, timeout=10).status_code == 404
    assert httpx.get(rest + "/log", timeout=10).status_code == 404
    with pytest.raises(grpc.RpcError) as gone:
        get(workers, task_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    # The sweeper deletes it from the store.
    deadline = time.monotonic() + 5
    while rows_of(workers.database_url, task_id) != (0, 0):
        if time.monotonic() > deadline:
            pytest.fail("the sweeper did not delete the expired task")
        time.sleep(0.05)


def test_wait_returns_at_the_end_or_the_timeout(workers: Stack) -> None:
    task_id = create(workers)
    client = TaskClient(workers.grpc_target, workers.token)
    request_cleanup = client.close
    started = time.monotonic()
    still = client.wait(task_id, timeout=0.3)
    assert still.status == task_pb2.TASK_STATUS_PENDING
    assert 0.25 < time.monotonic() - started < 2.0

    def finish() -> None:
        time.sleep(0.3)
        workers.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
        )
        workers.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
        )

    finisher = threading.Thread(target=finish)
    started = time.monotonic()
    finisher.start()
    done = client.wait(task_id, timeout=20)
    finisher.join()
    request_cleanup()
    assert done.status == task_pb2.TASK_STATUS_COMPLETED
    assert time.monotonic() - started < 2.0
