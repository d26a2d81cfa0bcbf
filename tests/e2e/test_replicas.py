"""Several server replicas behind one Envoy: a replica killed with SIGKILL while
followers are attached to it. They resume on another replica with nothing lost
or repeated, calls keep succeeding, Envoy sets the dead replica aside, and the
supervisor brings it back into rotation."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2
from tests.support.databases import rows_of
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

FOLLOWERS = 9  # three a replica: Envoy spreads streams round robin


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def replica_pid(stack: Stack, port: int) -> int:
    for pid in children(stack.proc.pid):
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        if b"serve" in argv and str(port).encode() in argv:
            return pid
    raise LookupError(f"no replica on port {port}")


def host_flags(stack: Stack, port: int) -> str:
    with urllib.request.urlopen(f"http://{stack.admin}/clusters", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    return " ".join(x for x in lines if x.startswith(f"tasktrail::127.0.0.1:{port}::health_flags::"))


def follow(target: str, token: str, task_id: str) -> tuple[list[str], int, int]:
    """A follower through Envoy that resumes after its last entry whenever its
    stream breaks; (entry ids, end status, resumes)."""
    got: list[str] = []
    resumes = 0
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        while True:
            request = task_service_pb2.FollowTaskLogRequest(task_id=task_id, after_entry_id=got[-1] if got else "")
            try:
                for frame in reader.FollowTaskLog(request, metadata=metadata):
                    kind = frame.WhichOneof("frame")
                    if kind == "entries":
                        got.extend(e.entry_id for e in frame.entries.entries)
                    elif kind == "end":
                        return got, frame.end.task_status, resumes
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                    raise
            resumes += 1
            time.sleep(0.05)


def test_followers_resume_on_another_replica_when_one_is_killed(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, "--no-sample", replicas=3)
    try:
        task = stack.writer.CreateTask(
            writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="ha", type="failover"),
            timeout=10,
        ).task
        stack.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
        )
        results: list[tuple[list[str], int, int]] = []

        followers = [
            threading.Thread(target=lambda: results.append(follow(stack.grpc_target, stack.token, task.task_id)))
            for _ in range(FOLLOWERS)
        ]
        for thread in followers:
            thread.start()
        time.sleep(1.0)  # every follower attached

        stopping = threading.Event()
        written: list[str] = []

        def write() -> None:
            # Through Envoy. An append cut off by the kill may have been made or not: the
            # client sends it again with the same append_id, and gets the same ids either way.
            n = 0
            while not stopping.is_set():
                entries = [task_pb2.LogEntry(message=f"line {n}.{i}") for i in range(5)]
                request = writer_service_pb2.AppendLogEntriesRequest(
                    task_id=task.task_id, entries=entries, append_id=f"append-{n}"
                )
                for _attempt in range(20):
                    try:
                        reply = stack.writer.AppendLogEntries(request, timeout=10)
                        break
                    except grpc.RpcError as error:
                        if error.code() is not grpc.StatusCode.UNAVAILABLE:
                            raise
                        time.sleep(0.05)
                else:
                    raise AssertionError("no replica took the append")
                written.extend(reply.entry_ids)
                n += 1
                time.sleep(0.01)

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)
        victim = stack.server_ports[0]
        os.kill(replica_pid(stack, victim), signal.SIGKILL)

        # Envoy sets the dead replica aside, and reads keep being answered meanwhile.
        deadline = time.monotonic() + 5
        while "failed" not in host_flags(stack, victim):
            assert time.monotonic() < deadline, host_flags(stack, victim)
            stack.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id), timeout=5)
            time.sleep(0.02)
        for _ in range(30):
            stack.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id), timeout=5)
        time.sleep(0.5)
        stopping.set()
        writer.join(30)
        stack.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_COMPLETED),
            timeout=10,
        )
        for thread in followers:
            thread.join(60)
            assert not thread.is_alive()

        assert len(results) == FOLLOWERS
        assert sum(resumes for _, _, resumes in results) >= 1  # some were on the killed replica
        for got, status, _ in results:
            assert got == written  # nothing lost, nothing twice, in order
            assert status == task_pb2.TASK_STATUS_COMPLETED

        # The supervisor restarted it, and Envoy takes it back.
        deadline = time.monotonic() + 20
        while "failed" in host_flags(stack, victim) or not host_flags(stack, victim):
            assert time.monotonic() < deadline, host_flags(stack, victim)
            time.sleep(0.2)
    finally:
        stop_stack(stack)


def test_housekeeping_is_done_once_across_replicas(tmp_path: Path) -> None:
    """Three replicas reap lapsed leases and sweep expired tasks, every 50 ms each:
    each task is failed once (one "worker lost" entry) and deleted once."""
    stack = start_stack(
        tmp_path,
        "--no-sample",
        "--lease-min", "0.2",
        "--lease-check-interval", "0.05",
        "--sweep-interval", "0.05",
        "--retention", "database=0.5",
        replicas=3,
    )  # fmt: skip
    try:
        claimed = []
        for i in range(30):
            task = stack.writer.CreateTask(
                writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="hk", type=f"t{i}"),
                timeout=10,
            ).task
            request = writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="gone", lease_id=f"l{i}")
            request.lease_duration.FromMilliseconds(200)
            stack.writer.ClaimTask(request, timeout=10)  # and never a heartbeat
            claimed.append(task.task_id)

        logs: dict[str, list[str]] = {}
        deadline = time.monotonic() + 10
        for task_id in claimed:
            while True:
                task = stack.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=5).task
                if task.status == task_pb2.TASK_STATUS_FAILED:
                    break
                assert time.monotonic() < deadline, task
                time.sleep(0.05)
            log = stack.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task_id), timeout=5)
            logs[task_id] = [e.message for e in log.entries]
        for messages in logs.values():
            assert sum(m.startswith("worker lost") for m in messages) == 1, messages

        # Retention 0.5 s: every one is swept, by one replica or another, once.
        deadline = time.monotonic() + 10
        for task_id in claimed:
            while rows_of(stack.database_url, task_id) != (0, 0):
                assert time.monotonic() < deadline, task_id
                time.sleep(0.1)
        for log_file in (stack.data_dir / "logs").glob("server-*.log"):
            text = log_file.read_text()
            assert "Traceback" not in text, (log_file, text[-2000:])
    finally:
        stop_stack(stack)
