"""The gate: credentials read from a call's metadata, and what each kind may do."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.auth.gate import basic_credentials
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc


def test_basic_credentials() -> None:
    def header(text: str) -> list[tuple[str, str]]:
        return [("authorization", "Basic " + base64.b64encode(text.encode()).decode())]

    assert basic_credentials(header("ops@example.com:pa:ss")) == ("ops@example.com", "pa:ss")
    assert basic_credentials([("authorization", "Bearer x")]) is None
    assert basic_credentials(header("nocolon")) == ("", "")
    assert basic_credentials([("authorization", "Basic !!")]) == ("", "")


@pytest.fixture
async def running(
    database_url: str, cloud_account: tuple[str, str, str]
) -> AsyncIterator[tuple[aio.Channel, str, str, str]]:
    account_id, api_key, secret = cloud_account
    srv = await server.start(ServerSettings(database_url=database_url, port=0, auth=True))
    async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield ch, account_id, api_key, secret
    await srv.stop(1)


@pytest.mark.anyio
async def test_account_keys_do_not_write(running: tuple[aio.Channel, str, str, str]) -> None:
    channel, account_id, api_key, secret = running
    writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    request = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_ACCOUNT, entity_id=account_id, type="x")
    with pytest.raises(aio.AioRpcError) as refused:
        await writer.CreateTask(request, metadata=(("x-api-key", api_key), ("x-api-secret-key", secret)))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
