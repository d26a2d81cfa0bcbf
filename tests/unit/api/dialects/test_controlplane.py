"""The control-plane servicer at the gRPC level: what it hands Envoy."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc import aio

from tasktrail.api.dialects.rendering import rfc3339
from tasktrail.controlplane.v1 import controlplane_pb2, controlplane_pb2_grpc
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc

pytestmark = pytest.mark.anyio


def hints(err: aio.AioRpcError) -> dict[str, str]:
    pairs: tuple[tuple[str, str | bytes], ...] = tuple(err.trailing_metadata() or ())
    return {k: v for k, v in pairs if isinstance(v, str)}


async def test_errors_carry_the_http_answer(channel: aio.Channel) -> None:
    cp = controlplane_pb2_grpc.ControlPlaneTaskServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as err:
        await cp.GetDatabaseTask(controlplane_pb2.GetDatabaseTaskRequest(database_id="db", task_id="abc"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    meta = hints(err.value)
    assert meta["x-http-status"] == "400"
    assert meta["goa-error"] == "invalid_format"
    assert json.loads(meta["x-http-body"])["name"] == "invalid_format"

    with pytest.raises(aio.AioRpcError) as missing:
        await cp.GetDatabaseTask(
            controlplane_pb2.GetDatabaseTaskRequest(database_id="db", task_id="d3cd2fab-4b1f-4eb9-b614-181c10b07acd")
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert json.loads(hints(missing.value)["x-http-body"]) == {
        "name": "not_found",
        "message": "no task found with the given ID",
    }


async def test_rendering(channel: aio.Channel) -> None:
    writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    cp = controlplane_pb2_grpc.ControlPlaneTaskServiceStub(channel)
    task = (
        await writer.CreateTask(
            writer_service_pb2.CreateTaskRequest(
                scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="stop_instance", instance_id="i1", host_id="h1"
            )
        )
    ).task
    got = await cp.GetDatabaseTask(controlplane_pb2.GetDatabaseTaskRequest(database_id="db", task_id=task.task_id))
    assert got == controlplane_pb2.Task(
        scope="database",
        entity_id="db",
        database_id="db",
        instance_id="i1",
        host_id="h1",
        task_id=task.task_id,
        created_at=rfc3339(task.created_at.seconds * 1_000_000),
        type="stop_instance",
        status="pending",
    )
    assert not got.HasField("completed_at")
    assert not got.HasField("error")


def test_rfc3339_whole_seconds() -> None:
    assert rfc3339(1_750_265_525_999_999) == "2025-06-18T16:52:05Z"
