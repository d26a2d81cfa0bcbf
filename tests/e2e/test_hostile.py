"""Hostile callers, against the real stack: malformed, oversized and deep
requests on every method, every bound at its limit and one past it, probes
across tenants on every surface, guessing, and the health check staying fast
while all of that runs. Bounded: each attack stops by itself."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tasktrail.cloud.v1 import cloud_pb2
from tasktrail.controlplane.v1 import controlplane_pb2
from tasktrail.crdb.v1 import crdb_pb2
from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2
from tests.support.clients import As, code, make_token
from tests.support.stack import Stack, start_stack, stop_stack
from tests.support.wire import deep_append

pytestmark = pytest.mark.e2e

SERVICES = [
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"],
    writer_service_pb2.DESCRIPTOR.services_by_name["TaskWriterService"],
    controlplane_pb2.DESCRIPTOR.services_by_name["ControlPlaneTaskService"],
    cloud_pb2.DESCRIPTOR.services_by_name["CloudTaskService"],
    crdb_pb2.DESCRIPTOR.services_by_name["CrdbTaskService"],
]
METHODS = [(s.full_name, m.name, m.server_streaming) for s in SERVICES for m in s.methods]


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def raw(channel: grpc.Channel, service: str, method: str, streaming: bool, data: bytes) -> grpc.StatusCode:
    """Send `data` as the request of a method, with no credential; the status it ends with."""
    path = f"/{service}/{method}"
    try:
        if streaming:
            stream_call: Any = channel.unary_stream(path, None, None)
            for _ in stream_call(data, timeout=10):
                pass
        else:
            unary: Any = channel.unary_unary(path, None, None)
            unary(data, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("service", "method", "streaming"), METHODS)
def test_every_method_refuses_malformed_bytes_as_invalid_argument(
    stack: Stack, service: str, method: str, streaming: bool
) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        for data in (b"\x0a\x05ab", b"\x0a", b"\xff\xff\xff\xff\x0f"):
            started = time.monotonic()
            assert raw(channel, service, method, streaming, data) == grpc.StatusCode.INVALID_ARGUMENT
            assert time.monotonic() - started < 1.0
        # 1 MiB nested 300 deep: refused where the method has a Struct; elsewhere an
        # unknown field it skips. Either way fast, and never a server error.
        started = time.monotonic()
        deep = raw(channel, service, method, streaming, deep_append(300, 1 << 20))
        assert time.monotonic() - started < 1.0
        if method == "AppendLogEntries":
            assert deep == grpc.StatusCode.INVALID_ARGUMENT
        assert deep not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        # Past gRPC's 4 MiB a message is refused before any parser sees it.
        huge = raw(channel, service, method, streaming, b"\x0a" + b"\x80" * 3 + b"\x02" + b"x" * (5 << 20))
        assert huge in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)


def test_repeated_fields_and_strings_at_their_limits_and_past(stack: Stack) -> None:
    writer = As(stack, stack.token).writer
    reader = As(stack, stack.token).reader
    statuses = [task_pb2.TASK_STATUS_PENDING, task_pb2.TASK_STATUS_RUNNING] * 3
    reader.ListTasks(task_service_pb2.ListTasksRequest(statuses=statuses, types=["t"] * 32), timeout=10)
    for request in (
        task_service_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_PENDING] * 20_000),
        task_service_pb2.ListTasksRequest(types=["t"] * 33),
        task_service_pb2.ListTasksRequest(types=["t" * 129]),
        task_service_pb2.ListTasksRequest(page_token="x" * 10_000),
    ):
        assert code(functools.partial(reader.ListTasks, request, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT

    def create(**fields: object) -> task_pb2.Task:
        values: dict[str, object] = {"scope": task_pb2.SCOPE_CRDB, "entity_id": "hostile-guid", "type": "t"}
        request = writer_service_pb2.CreateTaskRequest(**(values | fields))  # type: ignore[arg-type]
        return writer.CreateTask(request, timeout=10).task

    for name, limit in (("type", 128), ("entity_id", 64), ("parent_id", 64), ("node_name", 255), ("request_id", 128)):
        create(**{name: "a" * limit})
        past = functools.partial(create, **{name: "a" * (limit + 1)})
        assert code(past) == grpc.StatusCode.INVALID_ARGUMENT
    task = create()
    claim = writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, worker_name="w" * 256)
    assert code(lambda: writer.ClaimTask(claim, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    claim = writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, lease_id="l" * 65)
    assert code(lambda: writer.ClaimTask(claim, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    lease = writer.ClaimTask(writer_service_pb2.ClaimTaskRequest(task_id=task.task_id, lease_id="l" * 64)).lease_id
    entry = task_pb2.LogEntry(message="m")
    for append_id, expected in (("a" * 64, grpc.StatusCode.OK), ("a" * 65, grpc.StatusCode.INVALID_ARGUMENT)):
        append = writer_service_pb2.AppendLogEntriesRequest(
            task_id=task.task_id, entries=[entry], lease_id=lease, append_id=append_id
        )
        assert status_of(functools.partial(writer.AppendLogEntries, append, timeout=10)) == expected
    poison = task_pb2.LogEntry(message="m", entry_id="ffffffff-ffff-7fff-bfff-ffffffffffff")
    append = writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=[poison], lease_id=lease)
    assert code(lambda: writer.AppendLogEntries(append, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
    big = writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, lease_id=lease)
    big.error.message = "e" * (16 * 1024 + 1)
    big.status = task_pb2.TASK_STATUS_FAILED
    assert code(lambda: writer.UpdateTask(big, timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT


def test_a_tenant_learns_nothing_of_anothers_tasks(stack: Stack) -> None:
    a, b = (
        As(stack, make_token(stack, "writer", "database:tenant-a")),
        As(stack, make_token(stack, "writer", "database:tenant-b")),
    )
    theirs = b.create(task_pb2.SCOPE_DATABASE, "tenant-b")
    unknown = "01890000-0000-7000-8000-000000000000"
    for task_id in (theirs.task_id, unknown):
        for call in (
            lambda t=task_id: a.get(t),
            lambda t=task_id: a.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=t), timeout=10),
            lambda t=task_id: a.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=t), timeout=10),
            lambda t=task_id: a.reader.WaitTask(task_service_pb2.WaitTaskRequest(task_id=t), timeout=10),
            lambda t=task_id: list(
                a.reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=t), timeout=10)
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert refused.value.details() == f"no task {task_id}"  # the same words for both
    listed = a.reader.ListTasks(task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="tenant-b"))
    assert not listed.tasks
    # The same request id in two tenants makes two tasks, and tells neither of the other.
    for tenant, entity in ((a, "tenant-a"), (b, "tenant-b")):
        request = writer_service_pb2.CreateTaskRequest(
            scope=task_pb2.SCOPE_DATABASE, entity_id=entity, type="create", request_id="shared-key"
        )
        tenant.writer.CreateTask(request, timeout=10)
    # A cloud account's keys see only that account's tasks, on its port and over gRPC.
    keys = dict(line.split("=", 1) for line in (stack.data_dir / "dev-account.env").read_text().split())
    with grpc.insecure_channel(stack.grpc_target) as plain:
        reader = task_service_pb2_grpc.TaskServiceStub(plain)
        metadata = (("x-api-key", keys["ACCOUNT_KEY"]), ("x-api-secret-key", keys["SECRET_KEY"]))
        with pytest.raises(grpc.RpcError) as refused:
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=theirs.task_id), metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    reply = httpx.get(
        f"{stack.cloud}/v1/tasks/{theirs.task_id}",
        headers={"x-api-key": keys["ACCOUNT_KEY"], "x-api-secret-key": keys["SECRET_KEY"]},
        verify=stack.trust,
        timeout=10,
    )
    assert (reply.status_code, reply.json()["error"]["type"]) == (404, "TASK_NOT_FOUND")
    # A CRDB user reads CRDB tasks only.
    user = (stack.data_dir / "dev-user").read_text().strip()
    basic = base64.b64encode(user.encode()).decode()
    with grpc.insecure_channel(stack.grpc_target) as plain:
        reader = task_service_pb2_grpc.TaskServiceStub(plain)
        with pytest.raises(grpc.RpcError) as refused:
            reader.GetTask(
                task_service_pb2.GetTaskRequest(task_id=theirs.task_id),
                metadata=(("authorization", f"Basic {basic}"),),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_port_3000_answers_only_for_its_own_names(stack: Stack) -> None:
    reply = httpx.get(f"{stack.rest}/v1/tasks", headers={"host": "attacker.example"}, timeout=10)
    assert reply.status_code == 421
    assert reply.headers["goa-error"] == "misdirected_request"
    assert reply.json()["name"] == "misdirected_request"
    cancel = httpx.get(f"{stack.rest}/v1/databases/example/tasks/{'0' * 8}/cancel", headers={"host": "evil:3000"})
    assert cancel.status_code == 421
    assert httpx.get(f"{stack.rest}/v1/tasks", headers={"host": "localhost:3000"}, timeout=10).status_code == 200


def test_header_names_grpc_cannot_carry_are_ignored(stack: Stack) -> None:
    """HTTP allows ` | ~ ! … in a header's name, gRPC metadata does not: such a
    header is dropped at the edge (found by schemathesis: it failed the call
    inside the server, a 500)."""
    user = (stack.data_dir / "dev-user").read_text().strip().split(":", 1)
    odd = {"gk`h3": "z", "a|b": "1", "t~!#$%&'*+^": "x"}
    with httpx.Client(verify=stack.trust, timeout=10) as http:
        assert http.get(f"{stack.rest}/v1/databases/example/tasks", headers=odd).status_code == 200
        assert http.get(f"{stack.rest}/api/v1/tasks", headers=odd).status_code == 200
        assert http.get(f"{stack.crdb}/v1/crdb_tasks", headers=odd, auth=(user[0], user[1])).status_code == 200
        keys = dict(line.split("=", 1) for line in (stack.data_dir / "dev-account.env").read_text().split())
        cloud = {"x-api-key": keys["ACCOUNT_KEY"], "x-api-secret-key": keys["SECRET_KEY"], **odd}
        assert http.get(f"{stack.cloud}/v1/tasks", headers=cloud).status_code == 200


def test_x_result_ttl_takes_ascii_digits_only(stack: Stack) -> None:
    user = (stack.data_dir / "dev-user").read_text().strip().split(":", 1)
    reply = httpx.get(
        f"{stack.crdb}/v1/crdb_tasks/nope",
        headers={b"x-result-ttl": "²".encode()},
        auth=(user[0], user[1]),
        verify=stack.trust,
        timeout=10,
    )
    assert (reply.status_code, reply.json()["error_code"]) == (400, "invalid_header")


def test_log_text_cannot_drive_the_terminal(stack: Stack) -> None:
    writer = As(stack, stack.token).writer
    task = As(stack, stack.token).create(task_pb2.SCOPE_DATABASE, "hostile")
    entry = task_pb2.LogEntry(message="\x1b]0;owned\x07\x1b[31mred\rback")
    writer.AppendLogEntries(writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=[entry]))
    out = subprocess.run(
        [sys.executable, "-m", "tasktrail", "logs", "get", task.task_id, "--target", stack.grpc_target],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TASKTRAIL_TOKEN": stack.token},
        check=True,
    ).stdout
    assert "\x1b" not in out
    assert "\r" not in out
    assert "\\x1b]0;owned\\x07\\x1b[31mred\\x0dback" in out


def test_answers_are_cut_by_size_not_only_count(stack: Stack) -> None:
    writer = As(stack, stack.token).writer
    task = As(stack, stack.token).create(task_pb2.SCOPE_DATABASE, "hostile")
    line = "x" * 60_000
    for _ in range(4):
        batch = [task_pb2.LogEntry(message=line) for _ in range(25)]
        writer.AppendLogEntries(writer_service_pb2.AppendLogEntriesRequest(task_id=task.task_id, entries=batch))
    # 100 entries of 60,000 characters: 6 MB, past gRPC's 4 MiB in one answer.
    from tasktrail.client import TaskClient

    with TaskClient(stack.grpc_target, stack.token) as client:
        assert sum(1 for _ in client.log(task.task_id)) == 100
        follow = client.follow(task.task_id)
        got = 0
        for _ in follow:
            got += 1
            if got == 100:
                break
    assert got == 100


# -- credentials: guessing, and health while everything above runs at once ----------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("hostile"), "--auth-failures-per-user", "5")
    yield running
    stop_stack(running)


def test_guessing_a_password_is_refused_after_a_few_tries(guarded: Stack) -> None:
    name, _password = (guarded.data_dir / "dev-user").read_text().strip().split(":", 1)
    url = f"{guarded.crdb}/v1/crdb_tasks"
    answers = [
        httpx.get(url, auth=(name, f"guess-{i}"), verify=guarded.trust, timeout=10).status_code for i in range(8)
    ]
    assert answers[:5] == [401] * 5
    assert answers[-1] == 429
    refused = httpx.get(url, auth=(name, f"guess-{9}"), verify=guarded.trust, timeout=10)
    assert refused.json()["error_code"] == "too_many_requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 300
    # Another user name is not refused for it.
    assert httpx.get(url, auth=("someone@else", "x"), verify=guarded.trust, timeout=10).status_code == 401


def test_health_answers_fast_while_every_attack_runs(guarded: Stack) -> None:
    stop = threading.Event()
    deep = deep_append(300, 1 << 20)
    keys = dict(line.split("=", 1) for line in (guarded.data_dir / "dev-account.env").read_text().split())

    def malformed() -> None:
        with grpc.insecure_channel(guarded.grpc_target) as channel:
            append: Any = channel.unary_unary("/tasktrail.v1.TaskWriterService/AppendLogEntries", None, None)
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):
                    append(deep, timeout=5)

    def wide_lists() -> None:
        reader = As(guarded, guarded.token).reader
        request = task_service_pb2.ListTasksRequest(types=["t" * 100] * 30_000)
        while not stop.is_set():
            with contextlib.suppress(grpc.RpcError):
                reader.ListTasks(request, timeout=5)

    def guessing() -> None:
        with httpx.Client(verify=guarded.trust, timeout=5) as http:
            i = 0
            while not stop.is_set():
                i += 1
                http.get(f"{guarded.crdb}/v1/crdb_tasks", auth=(f"user-{i % 50}@x", f"guess-{i}"))
                http.get(
                    f"{guarded.cloud}/v1/tasks", headers={"x-api-key": keys["ACCOUNT_KEY"], "x-api-secret-key": f"s{i}"}
                )

    attackers = [threading.Thread(target=f, daemon=True) for f in (malformed, wide_lists, guessing)]
    for attacker in attackers:
        attacker.start()
    took: list[float] = []
    try:
        with grpc.insecure_channel(guarded.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
                took.append(time.monotonic() - started)
                time.sleep(0.02)
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join(30)
    took.sort()
    p95 = took[int(len(took) * 0.95)]
    # Under 100 ms as a rule, and never a stall (one was seconds); the slowest few may
    # meet a scheduling hiccup on two cores shared with the attackers and the test.
    assert p95 < 0.1, f"health p95 {p95 * 1000:.0f} ms over {len(took)} checks"
    assert took[-1] < 1.0, f"health slowest {took[-1] * 1000:.0f} ms"


# -- what `up` keeps private ---------------------------------------------------------------


def test_secrets_are_private_from_creation_and_never_in_argv(stack: Stack) -> None:
    assert stat.S_IMODE(stack.data_dir.stat().st_mode) == 0o700
    for name in ("dev-token", "dev-account.env", "dev-user", "tls/ca-key.pem", "tls/server-key.pem"):
        assert stat.S_IMODE((stack.data_dir / name).stat().st_mode) == 0o600, name
    if stack.database_url.startswith("sqlite"):
        assert stat.S_IMODE(Path(stack.database_url.removeprefix("sqlite:///")).stat().st_mode) == 0o600
    for pid in children_of(stack.proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode()
        assert stack.database_url not in cmdline, cmdline
        assert "--database-url" not in cmdline, cmdline


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_without_dev_mode_no_credential_is_made(tmp_path: Path) -> None:
    running = start_stack(tmp_path, "--no-dev")
    try:
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("dev-")]
        banner = (tmp_path / "up.log").read_text()
        assert "development token" not in banner
        assert "none made (--no-dev)" in banner
        assert code(lambda: As(running, None).get("01890000-0000-7000-8000-000000000000")) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    finally:
        stop_stack(running)


def test_tls_on_grpc_and_client_certificates_on_3000(tmp_path: Path) -> None:
    running = start_stack(tmp_path, "--grpc-tls", "--client-certs")
    try:
        with grpc.secure_channel(running.grpc_target, grpc.ssl_channel_credentials(running.ca.read_bytes())) as secure:
            reader = task_service_pb2_grpc.TaskServiceStub(grpc.intercept_channel(secure, WithToken(running.token)))
            assert reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=1), timeout=10).tasks
        with grpc.insecure_channel(running.grpc_target) as plain, pytest.raises(grpc.RpcError):  # no TLS: no answer
            task_service_pb2_grpc.TaskServiceStub(plain).ListTasks(task_service_pb2.ListTasksRequest(), timeout=5)
        rest = running.rest.replace("http://", "https://")
        with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
            httpx.get(f"{rest}/v1/tasks", verify=running.trust, timeout=10)
        made = json.loads(running.tasktrail("certs", "client", "ops", "--json", store=False))
        context = running.trust
        context.load_cert_chain(made["cert"], made["key"])
        reply = httpx.get(f"{rest}/v1/tasks", verify=context, timeout=10)
        assert reply.status_code == 200
    finally:
        stop_stack(running)
