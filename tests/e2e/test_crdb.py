"""The enterprise dialect end to end: the Redis Enterprise `/v1/crdb_tasks` API
on its HTTPS port, through Envoy, with basic-auth users made by the CLI and
tasks written by real worker processes; durations shortened through settings."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support.stack import ROOT, Stack, http_get, start_stack, stop_stack

pytestmark = pytest.mark.e2e

GUID = "1d7741cc-1110-4e2f-bc6c-935292783d24"


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Results kept 3 s by default (the API's 500 s, shortened)."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("crdb")), "--no-sample", "--retention", "crdb=3", "--sweep-interval", "0.2"
    )
    yield running
    stop_stack(running)


def new_user(stack: Stack, name: str) -> tuple[str, str]:
    made = json.loads(stack.tasktrail("users", "create", "--name", name, "--json"))
    return made["username"], made["password"]


def curl(stack: Stack, user: tuple[str, str], *argv: str) -> tuple[int, Any]:
    """`curl -k -u user:pass …`, as the documentation runs it; (status, JSON body)."""
    done = subprocess.run(
        ["curl", "-sk", "-u", f"{user[0]}:{user[1]}", "-w", "\n%{http_code}", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(body) if body else None


def request(
    stack: Stack, path: str, user: tuple[str, str] | None, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    sent = dict(headers or {})
    if user is not None:
        sent["authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    status, got, body = http_get(stack.crdb + path, sent, ca=stack.ca, method=method)
    assert got.get("content-type", "").startswith("application/json"), (status, body)
    return status, json.loads(body), got


def assert_error(status: int, body: Any, code: int) -> None:
    assert status == code, body
    assert set(body) == {"error_code", "description"}, body
    assert body["error_code"], body
    assert body["description"], body


class Worker:
    """tests/support/workers/crdb_worker.py, one command at a time."""

    def __init__(self, stack: Stack, operation: str, *extra: str) -> None:
        argv = [sys.executable, "-u", "-m", "tests.support.workers.crdb_worker", stack.grpc_target, stack.token, GUID]
        self.proc = subprocess.Popen(
            [*argv, operation, *extra], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.task_id = self.read().removeprefix("created ")

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def do(self, command: str) -> str:
        self.send(command)
        answer = self.read()
        assert answer.startswith(f"ok {command.split()[0]}"), answer
        return answer

    def close(self) -> int:
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


@needs_curl
def test_a_worker_moves_a_task_queued_started_finished(rs: Stack) -> None:
    user = new_user(rs, "ops@example.com")
    task_id = f"create-{uuid.uuid4().hex[:12]}"  # caller-chosen, as X-Task-ID allows
    worker = Worker(rs, "create_crdb", "--task-id", task_id)
    url = f"{rs.crdb}/v1/crdb_tasks/{task_id}"
    try:
        assert worker.task_id == task_id
        assert curl(rs, user, url) == (200, {"id": task_id, "crdb_guid": GUID, "status": "queued", "errors": []})
        status, listed = curl(rs, user, f"{rs.crdb}/v1/crdb_tasks")
        assert status == 200
        assert [t["id"] for t in listed] == [task_id]  # a bare array of the running and queued tasks

        worker.do("claim")
        worker.do("progress validating cluster1.local=validating cluster2.local=validating")
        assert curl(rs, user, url)[1]["status"] == "started"
        status, long = curl(rs, user, url + "?verbose=true")
        started = long.pop("started")
        assert long == {
            "id": task_id,
            "crdb_guid": GUID,
            "status": "started",
            "errors": [],
            "operation": "create_crdb",
            "progress": {
                "clusters": [
                    {"name": "cluster1.local", "progress": "validating"},
                    {"name": "cluster2.local", "progress": "validating"},
                ],
                "worker": "validating",
            },
            "worker_name": "crdb_worker:1:0",
        }
        assert started.endswith("Z")
        assert len(started) == len("2022-10-12T09:33:41Z")

        worker.do("commit")
        worker.do("progress committing cluster1.local=committed cluster2.local=committing")
        worker.do("finish")
        assert worker.close() == 0
        short = curl(rs, user, url)
        assert short == (200, {"id": task_id, "crdb_guid": GUID, "status": "finished", "errors": []})
        long = curl(rs, user, url + "?verbose=false")[1]
        assert long == short[1]  # verbose toggles the long form
        long = curl(rs, user, url + "?verbose=true")[1]
        assert long["status"] == "finished"
        assert long["ended"] >= long["started"]
        assert long["progress"]["clusters"][1] == {"name": "cluster2.local", "progress": "committing"}
        assert task_id not in [t["id"] for t in curl(rs, user, f"{rs.crdb}/v1/crdb_tasks")[1]]
    finally:
        worker.close()


@needs_curl
def test_a_failure_carries_each_clusters_error(rs: Stack) -> None:
    user = new_user(rs, "failures@example.com")
    worker = Worker(rs, "update_crdb")
    try:
        worker.do("claim")
        worker.do("fail")
        assert worker.close() == 0
        status, body = curl(rs, user, f"{rs.crdb}/v1/crdb_tasks/{worker.task_id}")
        assert status == 200
        assert body == {
            "id": worker.task_id,
            "crdb_guid": GUID,
            "status": "failed",
            "errors": [
                {"cluster_name": "cluster1.local", "description": "Error [401]", "error_code": "internal_error"},
                {
                    "cluster_name": "cluster2.local",
                    "description": "no answer from the cluster in 30 s",
                    "error_code": "timeout",
                },
            ],
        }
    finally:
        worker.close()


def log_of(stack: Stack, task_id: str) -> list[task_pb2.LogEntry]:
    reply = stack.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task_id), timeout=10)
    return list(reply.entries)


@needs_curl
def test_every_cancel_code_from_a_real_situation(rs: Stack) -> None:
    user = new_user(rs, "cancels@example.com")

    def cancel(task_id: str, query: str = "", who: tuple[str, str] = user) -> tuple[int, Any]:
        return curl(rs, who, "-X", "POST", f"{rs.crdb}/v1/crdb_tasks/{task_id}/actions/cancel{query}")

    # In its commit phase: 406 without force; forced, 200, and the worker is told it was forced.
    committing = Worker(rs, "update_crdb")
    try:
        committing.do("claim")
        committing.do("commit")
        status, body = cancel(committing.task_id)
        assert_error(status, body, 406)
        assert body["error_code"] == "task_in_commit_phase"
        committing.send("await-cancel")
        status, body = cancel(committing.task_id, "?force=true")
        assert status == 200
        assert body["id"] == committing.task_id
        assert committing.read() == "ok await-cancel forced"
        # The worker has not confirmed yet: a second cancel cannot be carried out.
        status, body = cancel(committing.task_id, "?force=true")
        assert_error(status, body, 409)
        committing.do("cancel")
        assert committing.close() == 0
        status, body = curl(rs, user, f"{rs.crdb}/v1/crdb_tasks/{committing.task_id}")
        assert body["status"] == "failed"
        assert body["errors"] == [
            {"cluster_name": "", "description": "the task was canceled (forced)", "error_code": "canceled"}
        ]
        forced = [e for e in log_of(rs, committing.task_id) if e.message == "task is canceling"]
        assert len(forced) == 1
        assert dict(forced[0].fields) == {"status": "canceling", "forced": True}
        # Already ended: 406.
        status, body = cancel(committing.task_id)
        assert_error(status, body, 406)
        assert body["error_code"] == "task_not_cancelable"
    finally:
        committing.close()

    # A graceful cancel of a started task: 200, the worker hears it and stops.
    running = Worker(rs, "purge_crdb")
    try:
        running.do("claim")
        running.send("await-cancel")
        assert cancel(running.task_id)[0] == 200
        assert running.read() == "ok await-cancel graceful"
        running.do("cancel")
        assert running.close() == 0
        assert curl(rs, user, f"{rs.crdb}/v1/crdb_tasks/{running.task_id}")[1]["errors"][0]["error_code"] == "canceled"
    finally:
        running.close()

    # Unknown: 404. Bad credentials: 401 with a Basic challenge.
    status, body = cancel(f"no-such-task-{uuid.uuid4().hex}")
    assert_error(status, body, 404)
    assert body["error_code"] == "task_not_found"
    status, body, headers = request(rs, f"/v1/crdb_tasks/{running.task_id}/actions/cancel", ("x", "y"), "POST")
    assert_error(status, body, 401)
    assert headers["www-authenticate"] == 'Basic realm="tasktrail"'


def create(stack: Stack, ttl: float | None = None) -> str:
    req = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_CRDB, entity_id=GUID, type="flush_crdb")
    if ttl is not None:
        req.result_ttl.FromMilliseconds(int(ttl * 1000))
    return str(stack.writer.CreateTask(req, timeout=10).task.task_id)


def finish(stack: Stack, task_id: str) -> None:
    for status in (task_pb2.TASK_STATUS_RUNNING, task_pb2.TASK_STATUS_COMPLETED):
        stack.writer.UpdateTask(writer_service_pb2.UpdateTaskRequest(task_id=task_id, status=status), timeout=10)


def test_results_are_kept_for_their_ttl_then_404(rs: Stack) -> None:
    user = new_user(rs, "retention@example.com")
    default, own, kept = create(rs), create(rs, ttl=6), create(rs)
    for task_id in (default, own, kept):
        finish(rs, task_id)
    began = time.monotonic()
    # X-Result-TTL on a GET keeps the result at least that long from now.
    status, body, _ = request(rs, f"/v1/crdb_tasks/{kept}", user, headers={"X-Result-TTL": "6"})
    assert (status, body["status"]) == (200, "finished")
    for task_id in (default, own, kept):
        assert request(rs, f"/v1/crdb_tasks/{task_id}", user)[0] == 200

    time.sleep(max(0.0, began + 4.0 - time.monotonic()))  # past the default (3 s), inside 6 s
    status, body, _ = request(rs, f"/v1/crdb_tasks/{default}", user)
    assert_error(status, body, 404)
    assert request(rs, f"/v1/crdb_tasks/{own}", user)[0] == 200
    assert request(rs, f"/v1/crdb_tasks/{kept}", user)[0] == 200
    # A shorter X-Result-TTL never shortens what is kept.
    assert request(rs, f"/v1/crdb_tasks/{kept}", user, headers={"X-Result-TTL": "0"})[0] == 200

    time.sleep(max(0.0, began + 6.8 - time.monotonic()))
    status, body, _ = request(rs, f"/v1/crdb_tasks/{own}", user)
    assert_error(status, body, 404)
    time.sleep(max(0.0, began + 7.8 - time.monotonic()))  # a kept result gets a second more than asked
    status, body, _ = request(rs, f"/v1/crdb_tasks/{kept}", user)
    assert_error(status, body, 404)


def test_users_are_managed_by_the_cli_and_read_only_crdb_tasks(rs: Stack) -> None:
    user = ("stdin@example.com", "correct horse battery staple")
    rs.tasktrail("users", "create", "--name", user[0], "--password-stdin", stdin=user[1] + "\n")
    assert user[0] in {u["username"] for u in json.loads(rs.tasktrail("users", "list", "--json"))}
    crdb_task = create(rs)
    database_task = rs.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="create"), timeout=10
    ).task.task_id
    assert request(rs, f"/v1/crdb_tasks/{crdb_task}", user)[0] == 200
    assert request(rs, f"/v1/crdb_tasks/{database_task}", user)[0] == 404  # another scope: not here

    # Native gRPC with the same credentials: CRDB tasks, and nothing else.
    basic = (("authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()),)
    with grpc.insecure_channel(rs.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        got = reader.GetTask(task_service_pb2.GetTaskRequest(task_id=crdb_task), metadata=basic, timeout=10)
        assert got.task.scope == task_pb2.SCOPE_CRDB
        with pytest.raises(grpc.RpcError) as hidden:
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=database_task), metadata=basic, timeout=10)
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
        listed = reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000), metadata=basic, timeout=10)
        assert listed.tasks
        assert {t.scope for t in listed.tasks} == {task_pb2.SCOPE_CRDB}
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            writer.CreateTask(
                writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_CRDB, entity_id=GUID, type="x"),
                metadata=basic,
                timeout=10,
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        wrong = (("authorization", "Basic " + base64.b64encode(f"{user[0]}:nope".encode()).decode()),)
        with pytest.raises(grpc.RpcError) as denied:
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=crdb_task), metadata=wrong, timeout=10)
        assert denied.value.code() is grpc.StatusCode.UNAUTHENTICATED

    # Deleted: refused from the next request on, over REST and gRPC.
    rs.tasktrail("users", "delete", user[0])
    status, body, headers = request(rs, f"/v1/crdb_tasks/{crdb_task}", user)
    assert_error(status, body, 401)
    assert headers["www-authenticate"].startswith("Basic realm=")
    with grpc.insecure_channel(rs.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.RpcError) as gone:
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=crdb_task), metadata=basic, timeout=10)
        assert gone.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_malformed_requests_get_4xx_in_the_api_shape(rs: Stack) -> None:
    user = new_user(rs, "malformed@example.com")
    task_id = create(rs)
    basic = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("/v1/crdb_tasks", "GET", {}, 401),
        ("/v1/crdb_tasks", "GET", {"authorization": "Basic !!!"}, 401),
        ("/v1/crdb_tasks", "GET", {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()}, 401),
        ("/v1/crdb_tasks", "GET", {"authorization": "Bearer nonsense"}, 401),
        (f"/v1/crdb_tasks/{task_id}", "GET", {"authorization": basic, "X-Result-TTL": "soon"}, 400),
        (f"/v1/crdb_tasks/{task_id}", "GET", {"authorization": basic, "X-Result-TTL": "-5"}, 400),
        (f"/v1/crdb_tasks/{task_id}?verbose=maybe", "GET", {"authorization": basic}, 400),
        (f"/v1/crdb_tasks/{task_id}?verbose=%FF", "GET", {"authorization": basic}, 400),
        (f"/v1/crdb_tasks/{task_id}/actions/cancel?force=perhaps", "POST", {"authorization": basic}, 400),
        ("/v1/crdb_tasks/" + "x" * 300, "GET", {"authorization": basic}, 404),
        ("/v1/crdb_tasks/%ZZ", "GET", {"authorization": basic}, 404),
        ("/v1/crdb_tasks/%FF", "GET", {"authorization": basic}, 404),
        ("/v1/crdb_tasks/%FF/actions/cancel", "POST", {"authorization": basic}, 404),
        ("/v1/crdb_task", "GET", {"authorization": basic}, 404),
        (f"/v1/crdb_tasks/{task_id}/actions/stop", "POST", {"authorization": basic}, 404),
        ("/tasktrail.crdb.v1.CrdbTaskService/ListCrdbTasks", "GET", {"authorization": basic}, 404),
        ("/v1/crdb_tasks", "POST", {"authorization": basic}, 405),
        (f"/v1/crdb_tasks/{task_id}", "DELETE", {"authorization": basic}, 405),
        (f"/v1/crdb_tasks/{task_id}/actions/cancel", "GET", {"authorization": basic}, 405),
    ]
    for path, method, headers, expected in cases:
        status, body, _ = request(rs, path, None, method, headers)  # each case carries its own credentials
        assert_error(status, body, expected)
    # A bad boolean is refused in the API's words, naming the parameter (not the transcoder's TYPE_BOOL).
    for path, method, said in (
        (f"/v1/crdb_tasks/{task_id}?verbose=maybe", "GET", 'invalid value "maybe" for parameter verbose'),
        (
            f"/v1/crdb_tasks/{task_id}/actions/cancel?force=perhaps",
            "POST",
            'invalid value "perhaps" for parameter force',
        ),
        (f"/v1/crdb_tasks/{task_id}?verbose=%FF%00", "GET", "invalid value for parameter verbose"),
    ):
        status, body, _ = request(rs, path, user, method)
        assert (status, body["error_code"]) == (400, "bad_request")
        assert body["description"].startswith(said), body
        assert "TYPE_BOOL" not in body["description"]
    for word in ("TRUE", "y", "No", "0", "tru%65"):  # the words the transcoder reads pass on to it
        assert request(rs, f"/v1/crdb_tasks/{task_id}?verbose={word}", user)[0] == 200
    assert request(rs, f"/v1/crdb_tasks/{task_id}?force=maybe", user)[0] == 200  # not a GET's parameter: ignored
    # The check follows the routes: the list takes no verbose (ignored), another method is a 405, and a
    # trailing slash is the same call, as the transcoder reads it.
    assert request(rs, "/v1/crdb_tasks/?verbose=maybe", user)[0] == 200
    status, body, _ = request(rs, f"/v1/crdb_tasks/{task_id}?verbose=maybe", user, "DELETE")
    assert (status, body["error_code"]) == (405, "method_not_allowed")
    status, body, _ = request(rs, f"/v1/crdb_tasks/{task_id}/actions/cancel/?force=perhaps", user, "POST")
    assert (status, body["description"]) == (400, 'invalid value "perhaps" for parameter force: it takes true or false')
    # Only the enterprise port checks them: elsewhere the path is unknown, whatever a client claims.
    claimed = {"x-tasktrail-dialect": "crdb"}
    assert http_get(rs.rest + "/v1/crdb_tasks/x?verbose=maybe", claimed)[0] == 404
    assert http_get(rs.cloud + "/v1/crdb_tasks/x?verbose=maybe", claimed, ca=rs.ca)[0] == 404
    status, body, _ = request(rs, "/v1/crdb_tasks", user, headers={"x-padding": "a" * 70_000})
    assert (status, body["error_code"]) == (431, "request_header_fields_too_large")
    # Plain HTTP on the HTTPS port.
    status, _, raw = http_get(rs.crdb.replace("https://", "http://") + "/v1/crdb_tasks", {"authorization": basic})
    assert_error(status, json.loads(raw), 400)
    # Unknown query parameters are ignored, as by the original.
    status, body, _ = request(rs, f"/v1/crdb_tasks/{task_id}?limit=3&x=%FF", user)
    assert (status, body["id"]) == (200, task_id)
    assert request(rs, "/v1/crdb_tasks?limit=3", user)[0] == 200
