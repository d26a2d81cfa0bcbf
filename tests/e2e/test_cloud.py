"""The cloud dialect end to end: the Redis Cloud task API on its HTTPS port,
through Envoy, with accounts and API keys made by the CLI and tasks written by
real worker processes."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support.stack import ROOT, Stack, http_get, start_stack, stop_stack

pytestmark = pytest.mark.e2e

# The documentation's commands (Redis Cloud, "Manage API tasks"), verbatim.
DOC_GET_TASK = """curl -s -X GET "https://$HOST/tasks/$TASK_ID" \\
    -H "accept: application/json" \\
    -H "x-api-key: $ACCOUNT_KEY" \\
    -H "x-api-secret-key: $SECRET_KEY"
"""
DOC_LIST_TASKS = """curl -s -X GET "https://$HOST/tasks" \\
    -H "accept: application/json" \\
    -H "x-api-key: $ACCOUNT_KEY" \\
    -H "x-api-secret-key: $SECRET_KEY"
"""
RECEIVED = "Task request received and is being queued for processing."
IN_PROGRESS = "Task request is being processed."
COMPLETED = "Request processing completed successfully and its resources are now being provisioned / de-provisioned."
ERROR = "Task request failed during processing. See error information for failure details."
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass(frozen=True)
class Account:
    account_id: str
    api_key: str
    secret_key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"accept": "application/json", "x-api-key": self.api_key, "x-api-secret-key": self.secret_key}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.api_key), ("x-api-secret-key", self.secret_key))


def new_account(stack: Stack, name: str) -> Account:
    made = json.loads(stack.tasktrail("accounts", "create", "--name", name, "--json"))
    key = json.loads(stack.tasktrail("keys", "create", "--account", made["account_id"], "--name", "ci", "--json"))
    assert key["account_id"] == made["account_id"]
    return Account(made["account_id"], made["api_key"], key["secret_key"], key["key_id"])


def get(
    stack: Stack, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, Any, dict[str, str]]:
    status, reply_headers, body = http_get(stack.cloud + path, headers, ca=stack.ca, method=method)
    assert reply_headers.get("content-type", "").startswith("application/json"), (status, body)
    return status, json.loads(body), reply_headers


def create(stack: Stack, account: str, command_type: str = "subscriptionCreateRequest") -> str:
    request = writer_service_pb2.CreateTaskRequest(
        scope=task_pb2.SCOPE_ACCOUNT, entity_id=account, type=command_type, request_id=str(uuid.uuid4())
    )
    return str(stack.writer.CreateTask(request, timeout=10).task.task_id)


def claim(stack: Stack, task_id: str) -> str:
    lease = str(uuid.uuid4())
    request = writer_service_pb2.ClaimTaskRequest(task_id=task_id, worker_name="test", lease_id=lease)
    request.lease_duration.FromSeconds(60)
    stack.writer.ClaimTask(request, timeout=10)
    return lease


def assert_cloud_error(status: int, body: Any, code: int) -> None:
    assert status == code, body
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"type", "status", "description"}, body
    assert body["error"]["status"].startswith(f"{code} "), body
    assert re.fullmatch(r"[A-Z_]+", body["error"]["type"]), body
    assert body["error"]["description"], body


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("cloud")), "--no-sample")
    yield running
    stop_stack(running)


class Worker:
    """tests/support/workers/cloud_worker.py: one status further on each step()."""

    def __init__(self, stack: Stack, account: Account, outcome: str) -> None:
        argv = [sys.executable, "-u", "-m", "tests.support.workers.cloud_worker", stack.grpc_target, stack.token]
        argv += [account.account_id, "subscriptionCreateRequest", "--outcome", outcome]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.task_id = self.said().removeprefix("created ")

    def said(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def step(self, expect: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.said() == expect

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def doc_curl(stack: Stack, account: Account, command: str, task_id: str = "") -> Any:
    env = {
        **os.environ,
        "HOST": stack.cloud.removeprefix("https://") + "/v1",
        "ACCOUNT_KEY": account.api_key,
        "SECRET_KEY": account.secret_key,
        "TASK_ID": task_id,
        "CURL_CA_BUNDLE": str(stack.ca),
    }
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_documented_curls_follow_a_worker_through_every_status(cloud: Stack, outcome: str) -> None:
    account = new_account(cloud, f"docs {outcome}")
    worker = Worker(cloud, account, outcome)
    try:
        tid = worker.task_id
        href = f"{cloud.cloud}/v1/tasks/{tid}"
        self_links = {
            "_links": {"self": {"href": href, "type": "GET"}},
            "links": [{"rel": "self", "type": "GET", "href": href}],
        }
        seen = []

        got = doc_curl(cloud, account, DOC_GET_TASK, tid)
        seen.append(got.pop("timestamp"))
        assert got == {
            "taskId": tid,
            "commandType": "subscriptionCreateRequest",
            "status": "received",
            "description": RECEIVED,
            "_links": {"task": {"href": href, "title": "getTaskStatusUpdates", "type": "GET"}},
            "links": [{"rel": "task", "type": "GET", "href": href}],
        }

        worker.step("claimed")
        got = doc_curl(cloud, account, DOC_GET_TASK, tid)
        seen.append(got.pop("timestamp"))
        assert got == {
            "taskId": tid,
            "commandType": "subscriptionCreateRequest",
            "status": "processing-in-progress",
            "description": IN_PROGRESS,
            "response": {},
            **self_links,
        }

        worker.step("ended")
        assert worker.proc.wait(10) == 0
        got = doc_curl(cloud, account, DOC_GET_TASK, tid)
        seen.append(got.pop("timestamp"))
        if outcome == "completed":
            resource = f"{cloud.cloud}/v1/subscriptions/77899"
            assert got == {
                "taskId": tid,
                "commandType": "subscriptionCreateRequest",
                "status": "processing-completed",
                "description": COMPLETED,
                "response": {"resourceId": 77899, "additionalResourceId": 111728, "resource": {"status": "success"}},
                "_links": {
                    "resource": {"href": resource, "title": "getSubscriptionInformation", "type": "GET"},
                    "self": {"href": href, "type": "GET"},
                },
                "links": [
                    {"rel": "resource", "type": "GET", "href": resource},
                    {"rel": "self", "type": "GET", "href": href},
                ],
            }
        else:
            assert got == {
                "taskId": tid,
                "commandType": "subscriptionCreateRequest",
                "status": "processing-error",
                "description": ERROR,
                "response": {
                    "error": {
                        "type": "CLOUD_ACCOUNT_NOT_FOUND",
                        "status": "404 NOT_FOUND",
                        "description": "Cloud account was not found",
                    },
                    "additionalInfo": "cloud-account-does-not-exists",
                },
                **self_links,
            }
        # Each status update moved the timestamp: ISO 8601, UTC, milliseconds.
        assert all(TIMESTAMP.match(t) for t in seen), seen
        assert seen == sorted(seen), seen
        assert len(set(seen)) == 3, seen

        listed = doc_curl(cloud, account, DOC_LIST_TASKS)
        assert set(listed) == {"tasks"}
        assert [t["taskId"] for t in listed["tasks"]] == [tid]
        assert listed["tasks"][0]["status"] == (
            "processing-completed" if outcome == "completed" else "processing-error"
        )
    finally:
        worker.close()


def test_accounts_never_see_each_other(cloud: Stack) -> None:
    a, b = new_account(cloud, "isolation a"), new_account(cloud, "isolation b")
    mine = {create(cloud, a.account_id) for _ in range(30)}
    theirs = {create(cloud, b.account_id) for _ in range(30)}
    for task_id in list(theirs)[:10]:
        claim(cloud, task_id)  # some of the other account's tasks are the most recently updated

    status, listed, _ = get(cloud, "/v1/tasks", a.headers)
    assert status == 200
    assert {t["taskId"] for t in listed["tasks"]} == mine

    missing = str(uuid.UUID(int=uuid.uuid4().int))
    status, absent, _ = get(cloud, f"/v1/tasks/{missing}", a.headers)
    assert_cloud_error(status, absent, 404)
    for task_id in theirs:
        # Exactly what a task that does not exist gets: nothing is revealed.
        assert get(cloud, f"/v1/tasks/{task_id}", a.headers)[:2] == (404, absent)
    for task_id in list(mine)[:5]:
        assert get(cloud, f"/v1/tasks/{task_id}", a.headers)[0] == 200

    # Native gRPC with the same keys: the account's own tasks, and nothing else.
    with grpc.insecure_channel(cloud.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        md = a.metadata

        def codes(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            return refused.value.code(), str(refused.value.details())

        ids: set[str] = set()
        token = ""
        while True:
            page = reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=7, page_token=token), metadata=md)
            ids |= {t.task_id for t in page.tasks}
            if not (token := page.next_page_token):
                break
        assert ids == mine
        # Asking for another account's tasks, or another scope's, finds none.
        other = task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_ACCOUNT, entity_id=b.account_id)
        assert not reader.ListTasks(other, metadata=md).tasks
        database = task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE)
        assert not reader.ListTasks(database, metadata=md).tasks

        nothing = codes(lambda: reader.GetTask(task_service_pb2.GetTaskRequest(task_id=missing), metadata=md))
        assert nothing[0] is grpc.StatusCode.NOT_FOUND
        for task_id in list(theirs)[:10]:
            calls: list[Callable[[str], object]] = [
                lambda t: reader.GetTask(task_service_pb2.GetTaskRequest(task_id=t), metadata=md),
                lambda t: reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=t), metadata=md),
                lambda t: reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=t), metadata=md),
                lambda t: list(
                    reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=t), metadata=md, timeout=5)
                ),
            ]
            for call in calls:
                assert codes(functools.partial(call, task_id)) == (nothing[0], nothing[1].replace(missing, task_id))
        assert (
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=next(iter(mine))), metadata=md).task.entity_id
            == a.account_id
        )
        # Keys read; they do not write.
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
        request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_ACCOUNT, entity_id=a.account_id, type="x")
        assert codes(lambda: writer.CreateTask(request, metadata=md))[0] is grpc.StatusCode.PERMISSION_DENIED
    # Still nothing of b's tasks, by any count.
    status, listed, _ = get(cloud, "/v1/tasks", a.headers)
    assert len(listed["tasks"]) == len(mine)


def test_revoked_keys_stop_at_once(cloud: Stack) -> None:
    account = new_account(cloud, "revocation")
    second = json.loads(cloud.tasktrail("keys", "create", "--account", account.account_id, "--name", "b", "--json"))
    task_id = create(cloud, account.account_id)
    assert get(cloud, f"/v1/tasks/{task_id}", account.headers)[0] == 200
    listed = json.loads(cloud.tasktrail("keys", "list", "--account", account.account_id, "--json"))
    assert {k["key_id"] for k in listed} == {account.key_id, second["key_id"]}
    assert all("secret" not in json.dumps(k) for k in listed)  # shown once, at creation

    cloud.tasktrail("keys", "revoke", account.key_id)
    status, body, _ = get(cloud, f"/v1/tasks/{task_id}", account.headers)
    assert_cloud_error(status, body, 401)
    with grpc.insecure_channel(cloud.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), metadata=account.metadata)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # The account's other key still works.
    other = {**account.headers, "x-api-secret-key": second["secret_key"]}
    assert get(cloud, f"/v1/tasks/{task_id}", other)[0] == 200
    # A user key works only with its own account's key.
    stranger = new_account(cloud, "stranger")
    mixed = {**other, "x-api-key": stranger.api_key}
    assert_cloud_error(*get(cloud, f"/v1/tasks/{task_id}", mixed)[:2], 401)


def test_malformed_requests_get_4xx_in_the_cloud_shape(cloud: Stack) -> None:
    account = new_account(cloud, "malformed")
    task_id = create(cloud, account.account_id)
    h = account.headers
    cases: list[tuple[str, dict[str, str], str, int]] = [
        ("/v1/tasks/not-a-uuid", h, "GET", 400),
        ("/v1/tasks/%ZZ", h, "GET", 400),
        (f"/v1/tasks/{task_id}x", h, "GET", 400),
        ("/v1/tasks/" + "9" * 300, h, "GET", 400),
        ("/v1/tasks", {}, "GET", 401),
        ("/v1/tasks", {"x-api-key": account.api_key}, "GET", 401),
        ("/v1/tasks", {"x-api-secret-key": account.secret_key}, "GET", 401),
        ("/v1/tasks", {"x-api-key": "", "x-api-secret-key": ""}, "GET", 401),
        ("/v1/tasks", {"x-api-key": "\u00e9", "x-api-secret-key": "x"}, "GET", 401),
        (f"/v1/tasks/{task_id}", {"x-api-key": "nope", "x-api-secret-key": "nope"}, "GET", 401),
        ("/v1/task", h, "GET", 404),
        ("/v1/tasks/a/b", h, "GET", 404),
        ("/v2/tasks", h, "GET", 404),
        ("/", h, "GET", 404),
        ("/tasktrail.cloud.v1.CloudTaskService/ListTasks", h, "GET", 404),
        ("/v1/tasks/%FF", h, "GET", 400),
        ("/v1/tasks/%C3%28" + task_id[2:], h, "GET", 400),
        ("/v1/tasks", h, "POST", 405),
        (f"/v1/tasks/{task_id}", h, "DELETE", 405),
        (f"/v1/tasks/{task_id}", h, "PUT", 405),
    ]
    for path, headers, method, expected in cases:
        status, body, _ = get(cloud, path, headers, method)
        assert_cloud_error(status, body, expected)
    status, body, _ = get(cloud, "/v1/tasks", {**h, "x-padding": "a" * 70_000})
    assert (status, body["error"]["type"], body["error"]["status"]) == (
        431,
        "REQUEST_HEADER_FIELDS_TOO_LARGE",
        "431 REQUEST_HEADER_FIELDS_TOO_LARGE",
    )
    # Plain HTTP on the HTTPS port.
    status, _, raw = http_get(cloud.cloud.replace("https://", "http://") + "/v1/tasks", h)
    assert_cloud_error(status, json.loads(raw), 400)
    # Unknown query parameters are ignored, as by the original.
    assert get(cloud, "/v1/tasks?limit=5&page=%FF", h)[0] == 200
    assert get(cloud, f"/v1/tasks/{task_id}?verbose=true", h)[1]["taskId"] == task_id
    # Upper-case ids are the same UUID.
    assert get(cloud, f"/v1/tasks/{task_id.upper()}", h)[1]["taskId"] == task_id


def test_grpc_cancels_a_cloud_task_the_cloud_api_cannot(cloud: Stack) -> None:
    account = new_account(cloud, "cancel")
    task_id = create(cloud, account.account_id)
    status, _, _ = get(cloud, f"/v1/tasks/{task_id}/actions/cancel", account.headers, "POST")
    assert status == 404
    with grpc.insecure_channel(cloud.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        done = reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), metadata=account.metadata)
        assert done.task.status == task_pb2.TASK_STATUS_CANCELING
        # No worker holds it: the server finishes the cancel itself.
        wait = task_service_pb2.WaitTaskRequest(task_id=task_id)
        wait.timeout.FromSeconds(10)
        assert reader.WaitTask(wait, metadata=account.metadata).task.status == task_pb2.TASK_STATUS_CANCELED
    status, body, _ = get(cloud, f"/v1/tasks/{task_id}", account.headers)
    assert status == 200
    assert body["status"] == "processing-error"
    assert body["response"]["error"]["type"] == "TASK_CANCELED"
    assert body["response"]["error"]["status"] == "409 CONFLICT"


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Durations shortened: a 3 s list window, 2 s retention, 20 requests a minute."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("cloud-short")),
        "--no-sample",
        "--cloud-list-window", "3",
        "--cloud-rate-limit", "20",
        "--retention", "account=2",
        "--sweep-interval", "0.2",
    )  # fmt: skip
    yield running
    stop_stack(running)


def test_list_window_and_order_by_last_status_update(short: Stack) -> None:
    account = new_account(short, "window")
    first, second, third = (create(short, account.account_id) for _ in range(3))

    def order() -> list[str]:
        status, body, _ = get(short, "/v1/tasks", account.headers)
        assert status == 200
        stamps = [t["timestamp"] for t in body["tasks"]]
        assert stamps == sorted(stamps, reverse=True)
        return [t["taskId"] for t in body["tasks"]]

    assert order() == [third, second, first]
    claim(short, second)
    time.sleep(0.005)
    claim(short, first)
    assert order() == [first, second, third]  # updated out of creation order
    short.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=third), timeout=10)
    assert order() == [third, first, second]

    time.sleep(3.2)  # out of the window: submitted more than 3 s ago, though still running
    fourth = create(short, account.account_id)
    assert order() == [fourth]
    assert get(short, f"/v1/tasks/{first}", account.headers)[0] == 200  # still readable by id


def test_a_finished_task_is_readable_until_its_retention_ends(short: Stack) -> None:
    account = new_account(short, "retention")
    task_id = create(short, account.account_id)
    short.reader.CancelTask(task_service_pb2.CancelTaskRequest(task_id=task_id), timeout=10)
    assert get(short, f"/v1/tasks/{task_id}", account.headers)[0] == 200
    time.sleep(2.3)
    status, body, _ = get(short, f"/v1/tasks/{task_id}", account.headers)
    assert_cloud_error(status, body, 404)


def test_rate_limit_per_account_key(short: Stack) -> None:
    a, b = new_account(short, "limited a"), new_account(short, "limited b")
    remaining = []
    for _ in range(20):
        status, _, headers = get(short, "/v1/tasks", a.headers)
        assert status == 200
        remaining.append(int(headers["x-rate-limit-remaining"]))
    assert remaining == list(range(19, -1, -1))
    status, body, headers = get(short, "/v1/tasks", a.headers)
    assert_cloud_error(status, body, 429)
    assert body["error"]["status"] == "429 TOO_MANY_REQUESTS"
    assert 1 <= int(headers["x-rate-limit-retry-after-seconds"]) <= 60
    assert headers["x-rate-limit-remaining"] == "0"
    # The limit is the account's: another account is not slowed.
    assert get(short, "/v1/tasks", b.headers)[0] == 200
    # A second user key of the same account shares its account's budget.
    key = json.loads(short.tasktrail("keys", "create", "--account", a.account_id, "--name", "2", "--json"))
    assert get(short, "/v1/tasks", {**a.headers, "x-api-secret-key": key["secret_key"]})[0] == 429
