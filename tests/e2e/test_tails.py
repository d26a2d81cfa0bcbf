"""Live log tails through the real stack: NDJSON and SSE through Envoy, read
chunk by chunk by a real HTTP client; resumes; a SIGKILLed server; followers
on one server process and writers on another."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tasktrail.client import TaskClient, TaskStatus
from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.e2e.test_up import children, cmdline
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tails(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("tails")),
        "--no-sample",
        "--follow-heartbeat",
        "0.4",
        "--envoy-idle-timeout",
        "1.5",
        "--replicas",
        "2",
    )
    yield running
    stop_stack(running)


def running_task(stack: Stack, entity: str = "tails") -> str:
    task = stack.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id=entity, type="update"), timeout=10
    ).task
    stack.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
    )
    return str(task.task_id)


def append(stack: Stack, task_id: str, *messages: str) -> list[str]:
    entries = [task_pb2.LogEntry(message=m) for m in messages]
    reply = stack.writer.AppendLogEntries(
        writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=entries), timeout=10
    )
    return list(reply.entry_ids)


def complete(stack: Stack, task_id: str) -> None:
    stack.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=task_pb2.TASK_STATUS_COMPLETED), timeout=10
    )


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        key, _, value = line.partition(": ")
        event[key] = json.loads(value) if key == "data" else value


def test_ndjson_entries_arrive_while_the_task_runs(tails: Stack) -> None:
    task_id = running_task(tails)
    url = f"{tails.rest}/v1/databases/tails/tasks/{task_id}/log/stream"
    with httpx.Client(timeout=10) as http, http.stream("GET", url) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/x-ndjson"
        lines = reply.iter_lines()
        assert "heartbeat" in json.loads(next(lines))  # the stream opens at once
        [first] = append(tails, task_id, "refreshing current state")
        sent = time.monotonic()
        while "heartbeat" in (line := json.loads(next(lines))):
            continue
        assert time.monotonic() - sent < 1.0
        assert line["entry_id"] == first
        assert line["message"] == "refreshing current state"
        assert set(line) == {"timestamp", "message", "entry_id"}
        assert tails.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=10).task.status == (
            task_pb2.TASK_STATUS_RUNNING
        )  # it came before the task ended
        more = append(tails, task_id, "a", "b", "c")
        complete(tails, task_id)
        rest = [json.loads(x) for x in lines]
    entries = [x for x in rest if "entry_id" in x]
    assert [x["entry_id"] for x in entries] == more
    assert rest[-1] == {"end": {"task_status": "completed"}}


def test_sse_and_a_reconnect_with_last_event_id(tails: Stack) -> None:
    task_id = running_task(tails)
    ids = append(tails, task_id, "one", "two")
    url = f"{tails.rest}/v1/databases/tails/tasks/{task_id}/log/stream"
    headers = {"Accept": "text/event-stream"}
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", url, headers=headers) as reply:
            assert reply.headers["content-type"] == "text/event-stream"
            events = sse_events(reply.iter_lines())
            assert next(events) == {"retry": "2000"}
            got = []
            for event in events:
                if event["event"] == "entry":
                    assert event["id"] == event["data"]["entry_id"]
                    got.append(event["id"])
                    if len(got) == 2:
                        break
            assert got == ids
        # The browser reconnects with the last id it saw; the writer went on meanwhile.
        later = append(tails, task_id, "three")
        complete(tails, task_id)
        with http.stream("GET", url, headers={**headers, "Last-Event-ID": ids[0]}) as reply:
            resumed = list(sse_events(reply.iter_lines()))
    entries = [e for e in resumed if e.get("event") == "entry"]
    assert [e["id"] for e in entries] == [ids[1], *later]  # exactly after it
    assert [e["data"]["message"] for e in entries] == ["two", "three"]
    assert resumed[-1] == {"event": "end", "data": {"end": {"task_status": "completed"}}}


def test_an_idle_follow_outlives_envoys_idle_timeout(tails: Stack) -> None:
    task_id = running_task(tails)
    url = f"{tails.rest}/v1/databases/tails/tasks/{task_id}/log/stream"
    with httpx.Client(timeout=10) as http, http.stream("GET", url) as reply:
        lines = reply.iter_lines()
        started = time.monotonic()
        beats = 0
        while time.monotonic() - started < 4.0:  # Envoy closes streams idle for 1.5 s here
            assert "heartbeat" in json.loads(next(lines))
            beats += 1
        assert beats >= 8
        [entry] = append(tails, task_id, "still here")
        while "heartbeat" in (line := json.loads(next(lines))):
            continue
        assert line["entry_id"] == entry


def test_follow_errors_are_plain_answers(tails: Stack) -> None:
    with httpx.Client(base_url=tails.rest, timeout=10) as http:
        missing = http.get(f"/v1/databases/tails/tasks/{uuid.uuid4()}/log/stream")
        assert (missing.status_code, missing.json()) == (
            404,
            {"name": "not_found", "message": "no task found with the given ID"},
        )
        bad = http.get("/v1/databases/tails/tasks/abc/log/stream")
        assert (bad.status_code, bad.json()["name"]) == (400, "invalid_format")
        task_id = running_task(tails)
        resume = http.get(
            f"/v1/databases/tails/tasks/{task_id}/log/stream",
            headers={"Accept": "text/event-stream", "Last-Event-ID": "nope"},
        )
        assert (resume.status_code, resume.json()["name"]) == (400, "invalid_format")
        complete(tails, task_id)


def test_host_task_streams(tails: Stack) -> None:
    task = tails.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_HOST, entity_id="host-9", type="remove_host"),
        timeout=10,
    ).task
    tails.writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
    )
    append(tails, task.task_id, "draining host-9")
    complete(tails, task.task_id)
    reply = httpx.get(f"{tails.rest}/v1/hosts/host-9/tasks/{task.task_id}/logs/stream", timeout=10)
    lines = [json.loads(x) for x in reply.text.splitlines()]
    assert [x["message"] for x in lines if "entry_id" in x] == ["draining host-9"]
    assert lines[-1] == {"end": {"task_status": "completed"}}


def direct(stack: Stack, port: int) -> tuple[Any, Any]:
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"), WithToken(stack.token))
    return task_service_pb2_grpc.TaskServiceStub(channel), writer_service_pb2_grpc.TaskWriterServiceStub(channel)


def server_ports(stack: Stack) -> list[int]:
    ports = []
    for pid in children(stack.proc.pid):
        argv = cmdline(pid).split()
        if "serve" in argv:
            ports.append(int(argv[argv.index("--port") + 1]))
    return sorted(ports)


def test_followers_on_one_process_see_writes_through_another(tails: Stack) -> None:
    ports = server_ports(tails)
    assert len(ports) == 2
    reader, _ = direct(tails, ports[1])
    _, writer = direct(tails, ports[0])
    task = writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="tails", type="update"),
        timeout=10,
    ).task
    writer.UpdateTask(
        writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING), timeout=10
    )
    frames = reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=task.task_id), timeout=30)
    got: list[str] = []
    delays: list[float] = []
    written: list[str] = []

    def write() -> None:
        for i in range(20):
            sent = time.monotonic()
            ids = writer.AppendLogEntries(
                writer_service_pb2.AppendLogEntriesRequest(
                    task_id=task.task_id, entries=[task_pb2.LogEntry(message=f"{i}", fields=None)]
                ),
                timeout=10,
            ).entry_ids
            written.extend(ids)
            pending[ids[0]] = sent
            time.sleep(0.02)
        writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_COMPLETED),
            timeout=10,
        )

    pending: dict[str, float] = {}
    thread = threading.Thread(target=write)
    thread.start()
    for frame in frames:
        if frame.WhichOneof("frame") == "entries":
            now = time.monotonic()
            for entry in frame.entries.entries:
                got.append(entry.entry_id)
                if entry.entry_id in pending:
                    delays.append(now - pending[entry.entry_id])
        elif frame.WhichOneof("frame") == "end":
            break
    thread.join()
    assert got == written
    assert max(delays) < 0.5  # the change poll sees the other process's commits within milliseconds


def test_a_follower_resumes_after_the_server_is_killed(tails: Stack) -> None:
    task_id = running_task(tails)
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            append_id = str(uuid.uuid4())  # the same batch again after a failure lands once
            request = writer_service_pb2.AppendLogEntriesRequest(
                task_id=task_id, entries=[task_pb2.LogEntry(message=f"line {i}")], append_id=append_id
            )
            for _ in range(100):
                try:
                    written.extend(tails.writer.AppendLogEntries(request, timeout=5).entry_ids)
                    break
                except grpc.RpcError:
                    time.sleep(0.1)
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=write)
    thread.start()
    got: list[str] = []
    with TaskClient(tails.grpc_target, tails.token) as client:
        follow = client.follow(task_id)
        killed = False
        for entry in follow:
            got.append(entry.entry_id)
            if len(got) == 30 and not killed:
                for pid in children(tails.proc.pid):
                    if "serve" in cmdline(pid):
                        os.kill(pid, signal.SIGKILL)  # every server process: the follow must resume on a new one
                killed = True
            if len(got) == 150:
                stop.set()
                thread.join()
                complete(tails, task_id)
        assert follow.status is TaskStatus.COMPLETED
        assert follow.resumes >= 1
    assert got == written  # nothing lost, nothing repeated, in order
