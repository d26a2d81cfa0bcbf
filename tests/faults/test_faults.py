"""The bad day, against the real stack with real workers and followers (SDK
processes): servers and Envoy killed, connections dropped, PostgreSQL
restarted, the disk full, the service stopped under load. After each: every
acknowledged entry stored exactly once and in order, every follower saw every
entry once and in order across its reconnections, and the task ended as its
worker said. Bounded: each scenario stops by itself. bench/faults.py runs the
same, longer, and prints the figures."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support.faults import (
    chaos_proxy,
    create_task,
    finish,
    kill_one,
    private_postgres,
    small_disk,
    start_workload,
)
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def fresh(tmp_path: Path, *extra: str, **kwargs: object) -> Stack:
    return start_stack(tmp_path / "stack", "--no-sample", *extra, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "count", "followers"), [("server", 3000, 6), ("envoy", 2000, 4)])
def test_killing_a_process_loses_and_repeats_nothing(tmp_path: Path, kind: str, count: int, followers: int) -> None:
    """A server process (any replica) or Envoy killed mid-stream, again and again;
    the supervisor restarts it and the worker and followers carry on."""
    stack = fresh(tmp_path)
    try:
        work = start_workload(stack.grpc_target, stack.token, tmp_path / "work", count=count, followers=followers)
        for _ in range(3 if kind == "server" else 2):
            time.sleep(1.5)
            kill_one(stack.proc.pid, kind)
        report = finish(work)
        assert report.clean, report.line()
        assert (report.worker, report.status, report.stored) == ("done", "TASK_STATUS_COMPLETED", count)
    finally:
        stop_stack(stack)


def test_dropped_connections_lose_and_repeat_nothing(tmp_path: Path) -> None:
    stack = fresh(tmp_path)
    try:
        grpc_port = int(stack.grpc_target.rsplit(":", 1)[1])
        with chaos_proxy(grpc_port, every=0.3, share=0.3, seconds=60) as port:
            through = f"127.0.0.1:{port}"
            work = start_workload(through, stack.token, tmp_path / "work", count=2000, followers=4)
            report = finish(work)
        assert report.clean, report.line()
        assert (report.worker, report.stored) == ("done", 2000)
        resumed = [line for out in work.outs for line in out.read_text().splitlines() if line.startswith("END ")]
        assert sum(int(line.rsplit("=", 1)[1]) for line in resumed) > 0, resumed  # connections did drop
    finally:
        stop_stack(stack)


def test_a_stopped_service_finishes_what_it_serves_and_resumes(tmp_path: Path) -> None:
    """SIGTERM under load: the calls in flight complete, followers get a last frame
    and resume once a new `up` serves the same store; nothing is lost."""
    stack = fresh(tmp_path)
    ports = stack_ports(stack)
    work = start_workload(stack.grpc_target, stack.token, tmp_path / "work", count=1500, followers=4, pause=0.05)
    in_flight: list[grpc.StatusCode] = []
    waiter = threading.Thread(target=wait_in_flight, args=(stack, work.task_id, in_flight))
    try:
        time.sleep(1.0)
        waiter.start()
        time.sleep(0.3)
        stack.proc.terminate()  # SIGTERM
        assert stack.proc.wait(60) == 0
        time.sleep(0.5)
        for port in (*stack.server_ports, int(ports[1]), int(ports[3])):  # nothing restarted after the stop
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        waiter.join(30)
        assert in_flight == [grpc.StatusCode.OK]  # the WaitTask in flight completed (it timed out normally)
        again = start_stack(
            stack.data_dir, "--no-sample", *ports, database_url=stack.database_url, owns=True
        )  # the same store, ports and token
        try:
            report = finish(work)
            assert report.clean, report.line()
            assert (report.worker, report.stored) == ("done", 1500)
        finally:
            stop_stack(again)
    finally:
        work.stop()
        if stack.proc.poll() is None:
            stop_stack(stack)


def wait_in_flight(stack: Stack, task_id: str, codes: list[grpc.StatusCode]) -> None:
    with grpc.insecure_channel(stack.grpc_target) as plain:
        reader = task_service_pb2_grpc.TaskServiceStub(grpc.intercept_channel(plain, WithToken(stack.token)))
        request = task_service_pb2.WaitTaskRequest(task_id=task_id)
        request.timeout.FromMilliseconds(1500)
        try:
            reader.WaitTask(request, timeout=30)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())


def stack_ports(stack: Stack) -> tuple[str, ...]:
    def port(url: str) -> str:
        return url.rsplit(":", 1)[1].split("/")[0]

    return (
        "--rest-port", port(stack.rest), "--grpc-port", port(stack.grpc_target), "--admin-port", port(stack.admin),
        "--cloud-port", port(stack.cloud), "--crdb-port", port(stack.crdb),
        "--server-port", str(stack.server_ports[0]), "--replicas", str(len(stack.server_ports)),
    )  # fmt: skip


@pytest.mark.only("postgres")
def test_a_postgresql_restart_is_an_outage_and_the_service_heals(tmp_path: Path) -> None:
    with private_postgres() as cluster:
        stack = fresh(tmp_path, database_url=cluster.url, owns=False)
        try:
            work = start_workload(stack.grpc_target, stack.token, tmp_path / "work", count=2000, followers=4)
            time.sleep(1.5)
            answers: list[tuple[float, int]] = []
            prober = threading.Thread(target=probe_rest, args=(stack, answers, 8.0))
            prober.start()
            cluster.stop()
            down = time.monotonic()
            time.sleep(2.0)
            cluster.start()
            up = time.monotonic()
            prober.join()
            report = finish(work)
            assert report.clean, report.line()
            assert (report.worker, report.stored) == ("done", 2000)
            codes = [code for _, code in answers]
            assert set(codes) <= {200, 503}, sorted(set(codes))  # the outage is a 503, never a 500
            assert 503 in codes
            assert codes[-1] == 200
            # Healed within seconds of the database coming back, without a restart.
            healed = next(at for at, code in answers if at > up and code == 200)
            assert healed - up < 5.0, (healed - up, down)
            # LISTEN is back: a follower wakes on a new entry at once, not on the one-second poll.
            assert max(delivery_latencies(stack)) < 0.5
        finally:
            stop_stack(stack)


def probe_rest(stack: Stack, answers: list[tuple[float, int]], seconds: float) -> None:
    """A REST read every 50 ms: when, and its status (0: no answer at all)."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                code = http.get(f"{stack.rest}/v1/databases/faults/tasks?limit=1").status_code
            except httpx.HTTPError:
                code = 0
            answers.append((time.monotonic(), code))
            time.sleep(0.05)


def delivery_latencies(stack: Stack) -> list[float]:
    """Seconds from an append's answer to a follower's getting it, for a few entries."""
    task_id = create_task(stack.grpc_target, stack.token, "listen")
    with grpc.insecure_channel(stack.grpc_target) as plain:
        channel = grpc.intercept_channel(plain, WithToken(stack.token))
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
        call = task_service_pb2_grpc.TaskServiceStub(channel).FollowTaskLog(
            task_service_pb2.FollowTaskLogRequest(task_id=task_id), timeout=30
        )
        follow = iter(call)
        next(follow)  # the first heartbeat: the stream is open
        took = []
        for i in range(5):
            time.sleep(0.2)
            entry = task_pb2.LogEntry(message=f"ping {i}")
            writer.AppendLogEntries(writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=[entry]))
            sent = time.monotonic()
            for frame in follow:
                if frame.WhichOneof("frame") == "entries":
                    took.append(time.monotonic() - sent)
                    break
        call.cancel()  # type: ignore[no-untyped-call]
    return took


@pytest.mark.only("sqlite")
def test_a_full_disk_refuses_writes_clearly_and_heals(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 12) as disk:
        (disk / "filler").write_bytes(bytes(2 << 20))  # room to free once the disk is full
        url = f"sqlite:///{disk / 'tasktrail.db'}"
        stack = fresh(tmp_path, database_url=url, owns=False)
        try:
            task_id = create_task(stack.grpc_target, stack.token)
            with grpc.insecure_channel(stack.grpc_target) as plain:
                writer = writer_service_pb2_grpc.TaskWriterServiceStub(
                    grpc.intercept_channel(plain, WithToken(stack.token))
                )
                batch = [task_pb2.LogEntry(message="x" * 60_000) for _ in range(20)]
                acknowledged = 0
                refused: grpc.RpcError | None = None
                for _ in range(40):  # 1.2 MB a batch: the 12 MB disk fills within
                    try:
                        request = writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=batch)
                        acknowledged += len(writer.AppendLogEntries(request, timeout=30).entry_ids)
                    except grpc.RpcError as error:
                        refused = error
                        break
                assert refused is not None, "the disk never filled"
                assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
                assert "no room left" in (refused.details() or "")
                # A REST write (a cancel) says so in its dialect: 507.
                cancel = httpx.get(f"{stack.rest}/v1/databases/faults/tasks/{task_id}/cancel", timeout=10)
                assert (cancel.status_code, cancel.json()["name"]) == (507, "insufficient_storage")
                # Reads still work, and nothing acknowledged is lost.
                stored = sum(1 for _ in read_all(stack, task_id))
                assert stored == acknowledged
                with sqlite3.connect(disk / "tasktrail.db") as raw:
                    assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                # Free space (the store's own file can only grow: a filler made room here).
                (disk / "filler").unlink()
                request = writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=batch[:2])
                assert len(writer.AppendLogEntries(request, timeout=30).entry_ids) == 2
                assert sum(1 for _ in read_all(stack, task_id)) == acknowledged + 2
        finally:
            stop_stack(stack)


def read_all(stack: Stack, task_id: str) -> list[str]:
    from tasktrail.client import TaskClient

    with TaskClient(stack.grpc_target, stack.token) as client:
        return [e.message for e in client.log(task_id)]


def test_the_supervisor_restarts_each_child_on_its_own_clock(tmp_path: Path) -> None:
    """Four kills in a row: each child comes back within a second or two, and one
    child's wait never holds another back."""
    stack = fresh(tmp_path)
    try:
        for _ in range(4):
            kill_one(stack.proc.pid, "server")
            time.sleep(0.3)
            kill_one(stack.proc.pid, "envoy")
            back = time.monotonic()
            wait_serving(stack)
            assert time.monotonic() - back < 4.0
    finally:
        stop_stack(stack)


def wait_serving(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{stack.rest}/v1/tasks?limit=1", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(subprocess.run(["tail", "-20", str(stack.data_dir / "up.log")], capture_output=True).stdout)
