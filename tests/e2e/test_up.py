"""`tasktrail up`: samples once, survives a crashed server process without
losing an acknowledged write, refuses an old schema, and stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from tasktrail.edge import sample
from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2
from tests.support import databases
from tests.support.stack import Stack, same_ports, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def count_tasks(stub: object) -> int:
    reply = stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000), timeout=10)  # type: ignore[attr-defined]
    return len(reply.tasks)


def test_samples_once_and_survives_a_killed_server(tmp_path: Path) -> None:
    url = databases.fresh_url(tmp_path)
    stack = start_stack(tmp_path, database_url=url)
    try:
        samples = count_tasks(stack.reader)
        assert samples == len(sample.SAMPLES) + len(sample.cloud_samples("1000001")) + len(sample.CRDB_SAMPLES)
        task = stack.writer.CreateTask(
            writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="durable", type="create"),
            timeout=10,
        ).task
        ids = stack.writer.AppendLogEntries(
            writer_service_pb2.AppendLogEntriesRequest(
                task_id=task.task_id, entries=[task_pb2.LogEntry(message=f"line {i}") for i in range(100)]
            ),
            timeout=10,
        ).entry_ids
        servers = [p for p in children(stack.proc.pid) if "serve" in cmdline(p)]
        for server in servers:
            os.kill(server, signal.SIGKILL)  # no chance to flush anything
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                log = stack.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task.task_id), timeout=2)
                break
            except grpc.RpcError:
                time.sleep(0.2)
        else:
            pytest.fail("the supervisor did not bring the server back")
        assert [e.entry_id for e in log.entries] == list(ids)
        assert not set(servers) & {p for p in children(stack.proc.pid) if "serve" in cmdline(p)}
    finally:
        stop_stack(stack)
    # Started again on the same store: no second set of samples.
    again = start_stack(tmp_path, database_url=url)
    try:
        assert count_tasks(again.reader) == samples + 1
    finally:
        stop_stack(again)
        databases.drop(url)


def test_no_sample_and_clean_stop(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, "--no-sample")
    kids = children(stack.proc.pid)
    try:
        assert count_tasks(stack.reader) == 0
        assert len(kids) == databases.REPLICAS + 1  # the servers, and Envoy
    finally:
        stop_stack(stack)
    assert stack.proc.returncode == 0
    for pid in kids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in (Path(f"/proc/{pid}") / "status").read_text().lower()


def test_serve_refuses_an_unmigrated_store(tmp_path: Path) -> None:
    reply = subprocess.run(
        [sys.executable, "-m", "tasktrail", "serve", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reply.returncode != 0
    assert "run `tasktrail migrate` first" in reply.stderr


def test_sigterm_lets_in_flight_calls_finish(tmp_path: Path) -> None:
    from tasktrail.client import wait_request
    from tasktrail.edge.sample import WithToken
    from tasktrail.store import migrate
    from tasktrail.v1 import task_service_pb2_grpc, writer_service_pb2_grpc
    from tests.support.stack import free_port

    url = databases.fresh_url(tmp_path)
    migrate(url)
    made = subprocess.run(
        [sys.executable, "-m", "tasktrail", "tokens", "create", "--database-url", url, "--name", "test",
         "--role", "writer", "--grant", "database", "--json"],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    token = json.loads(made.stdout)["token"]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tasktrail", "serve", "--database-url", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            grpc.channel_ready_future(plain).result(timeout=30)
            channel = grpc.intercept_channel(plain, WithToken(token))
            writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
            task = writer.CreateTask(
                writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="update"),
                timeout=10,
            ).task
            reader = task_service_pb2_grpc.TaskServiceStub(channel)
            waiting = reader.WaitTask.future(wait_request(task.task_id, 1.5), timeout=10)
            time.sleep(0.3)  # the wait is in flight
            server.send_signal(signal.SIGTERM)
            reply = waiting.result(timeout=10)  # it finishes as it would have, not cut off
            assert not reply.done
        assert server.wait(15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        databases.drop(url)


def up_again(stack: Stack, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tasktrail", "up", "--data-dir", str(data_dir), "--database-url", stack.database_url]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)


def test_a_second_up_refuses_at_once_and_touches_nothing(stack: Stack, tmp_path: Path) -> None:
    """A second `up` on the same data directory, or on ports in use, exits 1 with
    a sentence (before, it printed the banner, found the first instance's servers
    healthy, and restarted its own Envoy for ever into the first one's logs)."""
    logs = {p.name: p.stat().st_size for p in (stack.data_dir / "logs").glob("*.log") if p.name != "access.log"}
    same_dir = up_again(stack, stack.data_dir, *same_ports(stack))
    assert same_dir.returncode == 1
    assert f"another tasktrail up (pid {stack.proc.pid}) is running with the data directory" in same_dir.stderr
    assert "tasktrail is up" not in same_dir.stdout + same_dir.stderr
    rest_port = stack.rest.rsplit(":", 1)[1]
    elsewhere = up_again(stack, tmp_path / "other", *same_ports(stack))
    assert elsewhere.returncode == 1
    assert f"port {rest_port} on 127.0.0.1 (--rest-port) is in use" in elsewhere.stderr
    assert "tasktrail is up" not in elsewhere.stdout + elsewhere.stderr
    assert {p.name: p.stat().st_size for p in (stack.data_dir / "logs").glob("*.log") if p.name != "access.log"} == logs
