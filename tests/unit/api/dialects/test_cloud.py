"""The cloud dialect: rendering rules, and the servicer at the gRPC level (what it
hands Envoy), with accounts and keys in a real store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from tasktrail.api import server
from tasktrail.api.dialects.cloud import CloudSettings, iso_ms, render, status_line
from tasktrail.api.server import ServerSettings
from tasktrail.cloud.v1 import cloud_pb2, cloud_pb2_grpc
from tasktrail.core.model import Result, Scope, Status, Task, TaskError
from tasktrail.v1 import task_service_pb2, task_service_pb2_grpc

ID = "01a22c05-95a0-7459-91f9-c3699c35f2aa"
BASE = "https://tasks.example:8443"


def test_timestamps_are_iso_8601_utc_with_milliseconds() -> None:
    assert iso_ms(1_565_255_259_826_999) == "2019-08-08T09:07:39.826Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


def test_status_lines_are_springs() -> None:
    assert status_line(400) == "400 BAD_REQUEST"
    assert status_line(404) == "404 NOT_FOUND"
    assert status_line(429) == "429 TOO_MANY_REQUESTS"
    assert status_line(500) == "500 INTERNAL_SERVER_ERROR"
    assert status_line(599) == "599 UNKNOWN"


def task(status: Status, result: Result | None = None, error: TaskError | None = None) -> Task:
    return Task(
        task_id=ID, scope=Scope.ACCOUNT, entity_id="1000001", type="databaseCreateRequest", status=status,
        created_at=1_000_000, updated_at=2_000_000, status_changed_at=2_000_000, result=result, error=error,
    )  # fmt: skip


def test_ids_that_are_no_int32_are_left_out() -> None:
    result = Result(resource_id="51055029", additional_resource_id="db-7", resource_path="/v1/x")
    out = render(task(Status.COMPLETED, result=result), BASE)
    assert out.response.resource_id == 51055029
    assert not out.response.HasField("additional_resource_id")
    out = render(task(Status.COMPLETED, result=Result(resource_id=str(2**31))), BASE)
    assert not out.response.HasField("resource_id")


def test_a_failure_without_a_status_is_a_500_general_error() -> None:
    out = render(task(Status.FAILED, error=TaskError(code="", message="boom")), BASE)
    assert (out.response.error.type, out.response.error.status) == ("GENERAL_ERROR", "500 INTERNAL_SERVER_ERROR")
    assert out.response.error.description == "boom"


def test_links_follow_the_status() -> None:
    received = render(task(Status.PENDING), BASE)
    assert received.hal_links.task.title == "getTaskStatusUpdates"
    assert [link.rel for link in received.links] == ["task"]
    assert not received.HasField("response")
    done = render(task(Status.COMPLETED, result=Result(resource_path="/v1/subscriptions/1")), BASE)
    assert [link.rel for link in done.links] == ["resource", "self"]
    assert done.links[0].href == f"{BASE}/v1/subscriptions/1"
    assert not done.hal_links.resource.HasField("title")
    canceling = render(task(Status.CANCELING), BASE)
    assert canceling.status == "processing-in-progress"


# -- the servicer ---------------------------------------------------------------------


@pytest.fixture
async def running(
    database_url: str, cloud_account: tuple[str, str, str]
) -> AsyncIterator[tuple[aio.Channel, str, str, str]]:
    account_id, api_key, secret = cloud_account
    settings = ServerSettings(database_url=database_url, port=0, auth=True, cloud=CloudSettings(rate_limit=3))
    srv = await server.start(settings)
    async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield ch, account_id, api_key, secret
    await srv.stop(1)


def http(err: aio.AioRpcError) -> tuple[int, dict[str, object], dict[str, str]]:
    metadata: tuple[tuple[str, str | bytes], ...] = tuple(err.trailing_metadata() or ())
    pairs = {k: v for k, v in metadata if isinstance(v, str)}
    return int(pairs["x-http-status"]), json.loads(pairs["x-http-body"]), pairs


@pytest.mark.anyio
async def test_keys_and_limits_at_the_servicer(running: tuple[aio.Channel, str, str, str]) -> None:
    channel, _, api_key, secret = running
    cloud = cloud_pb2_grpc.CloudTaskServiceStub(channel)
    keys = (("x-api-key", api_key), ("x-api-secret-key", secret))

    with pytest.raises(aio.AioRpcError) as refused:
        await cloud.ListTasks(cloud_pb2.ListTasksRequest())
    status, body, _ = http(refused.value)
    assert status == 401
    assert body["error"] == {
        "type": "UNAUTHORIZED",
        "status": "401 UNAUTHORIZED",
        "description": "the x-api-key and x-api-secret-key headers are required",
    }

    call = cloud.ListTasks(cloud_pb2.ListTasksRequest(), metadata=keys)
    assert not (await call).tasks
    assert ("x-rate-limit-remaining", "2") in tuple(await call.initial_metadata() or ())

    with pytest.raises(aio.AioRpcError) as bad:
        await cloud.GetTask(cloud_pb2.GetTaskRequest(task_id="nope"), metadata=keys)
    assert http(bad.value)[0] == 400
    with pytest.raises(aio.AioRpcError) as missing:
        await cloud.GetTask(cloud_pb2.GetTaskRequest(task_id=ID), metadata=keys)
    status, body, headers = http(missing.value)
    assert (status, headers["x-rate-limit-remaining"]) == (404, "0")
    with pytest.raises(aio.AioRpcError) as limited:
        await cloud.ListTasks(cloud_pb2.ListTasksRequest(), metadata=keys)
    status, body, headers = http(limited.value)
    assert status == 429
    assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 1 <= int(headers["x-rate-limit-retry-after-seconds"]) <= 60


@pytest.mark.anyio
async def test_an_accounts_requests_count_on_every_port(running: tuple[aio.Channel, str, str, str]) -> None:
    """The same keys through the native API count against the same limit (3 here)."""
    channel, _, api_key, secret = running
    keys = (("x-api-key", api_key), ("x-api-secret-key", secret))
    native = task_service_pb2_grpc.TaskServiceStub(channel)
    for _ in range(3):
        await native.ListTasks(task_service_pb2.ListTasksRequest(), metadata=keys)
    with pytest.raises(aio.AioRpcError) as native_refused:
        await native.ListTasks(task_service_pb2.ListTasksRequest(), metadata=keys)
    assert native_refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    cloud = cloud_pb2_grpc.CloudTaskServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as cloud_refused:
        await cloud.ListTasks(cloud_pb2.ListTasksRequest(), metadata=keys)
    assert http(cloud_refused.value)[0] == 429
