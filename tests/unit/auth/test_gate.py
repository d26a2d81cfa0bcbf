"""The gate: credentials read from a call's metadata, and what each kind may do."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.auth import tokens
from tasktrail.auth.gate import basic_credentials
from tasktrail.auth.principal import Role
from tasktrail.core.model import Scope
from tasktrail.store import Store
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc


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


@pytest.fixture
async def guarded(database_url: str, store: Store) -> AsyncIterator[tuple[aio.Channel, str]]:
    """A server that checks tokens (open streams every 0.3 s), and a writer token of every scope."""
    token = await store.write(lambda tx: tokens.create_token(tx, "unit", Role.WRITER, [s.value for s in Scope]))
    srv = await server.start(ServerSettings(database_url=database_url, port=0, auth=True, recheck_interval=0.3))
    async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield ch, token
    await srv.stop(1)


@pytest.mark.anyio
async def test_a_revoked_token_ends_its_open_streams(guarded: tuple[aio.Channel, str], store: Store) -> None:
    channel, token = guarded
    auth = (("authorization", f"Bearer {token}"),)
    writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    made = await writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="db", type="t"), metadata=auth
    )
    reader = task_service_pb2_grpc.TaskServiceStub(channel)
    follow = reader.FollowTaskLog(task_service_pb2.FollowTaskLogRequest(task_id=made.task.task_id), metadata=auth)
    first = await follow.read()
    assert isinstance(first, task_service_pb2.FollowTaskLogResponse)
    assert first.WhichOneof("frame") == "heartbeat"
    await store.write(lambda tx: tokens.revoke_token(tx, token))
    started = time.monotonic()
    ended = await asyncio.wait_for(follow.code(), 5)
    assert ended == grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - started < 2.0


@pytest.mark.anyio
async def test_a_store_that_cannot_be_read_is_unavailable_not_unknown(database_url: str, store: Store) -> None:
    token = await store.write(lambda tx: tokens.create_token(tx, "unit", Role.READER, ["database"]))
    srv = await server.start(ServerSettings(database_url=database_url, port=0, auth=True))
    try:
        await srv.store.close()  # the store is gone under the server
        async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            reader = task_service_pb2_grpc.TaskServiceStub(ch)
            with pytest.raises(aio.AioRpcError) as refused:
                await reader.GetTask(
                    task_service_pb2.GetTaskRequest(task_id="x"), metadata=(("authorization", f"Bearer {token}"),)
                )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Traceback" not in (refused.value.details() or "")
        assert "closed" not in (refused.value.details() or "")  # no internal text
    finally:
        await srv.server.stop(0)
