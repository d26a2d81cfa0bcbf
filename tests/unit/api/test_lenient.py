"""Requests whose strings are not UTF-8: parsed with U+FFFD in their place,
on a real in-process server as on the bytes alone."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from grpc import aio

from tasktrail.api import lenient
from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2
from tests.support.wire import deep_append

pytestmark = pytest.mark.anyio

Append = writer_service_pb2.AppendLogEntriesRequest


def broken(message: Append) -> bytes:
    """The message on the wire, with every "AB" turned into a byte that is not UTF-8 and "B"."""
    data = message.SerializeToString()
    assert b"AB" in data
    return data.replace(b"AB", b"\xffB")


def test_valid_messages_parse_as_they_are() -> None:
    message = Append(task_id="t", entries=[task_pb2.LogEntry(message="héllo")], lease_id="l")
    assert lenient.lenient(Append.FromString)(message.SerializeToString()) == message
    assert lenient.scrub(message.SerializeToString(), Append.DESCRIPTOR) == message.SerializeToString()


def test_bad_strings_nested_and_in_maps_become_u_fffd() -> None:
    fields = Struct()
    fields.update({"kAB": "vAB", "n": 3})
    message = Append(
        task_id="idAB",
        entries=[task_pb2.LogEntry(entry_id="e", message="mAB", fields=fields), task_pb2.LogEntry(message="AB")],
        lease_id="lease",
    )
    with pytest.raises(DecodeError):
        Append.FromString(broken(message))
    parsed = lenient.lenient(Append.FromString)(broken(message))
    assert isinstance(parsed, Append)
    assert parsed.task_id == "id\ufffdB"
    assert [e.message for e in parsed.entries] == ["m\ufffdB", "\ufffdB"]
    assert dict(parsed.entries[0].fields) == {"k\ufffdB": "v\ufffdB", "n": 3}
    assert parsed.lease_id == "lease"


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0a", b"\x08\xff", b"\x0b"])
def test_malformed_messages_still_fail(data: bytes) -> None:
    """As a Malformed request (the servicer answers INVALID_ARGUMENT), never an
    exception (which gRPC would answer INTERNAL: a 500)."""
    refused = lenient.lenient(Append.FromString)(data)
    assert isinstance(refused, lenient.Malformed)
    assert "not a valid message" in refused.message


@pytest.mark.parametrize(("depth", "text"), [(300, 1 << 20), (40, 1 << 20), (40, 1000), (300, 10)])
def test_refusing_a_deep_or_large_request_costs_its_size_not_more(depth: int, text: int) -> None:
    data = deep_append(depth, text)
    parse = lenient.lenient(Append.FromString)
    started = time.perf_counter()
    refused = parse(data)
    took = time.perf_counter() - started
    assert isinstance(refused, lenient.Malformed)
    assert took < 0.02 * max(1.0, len(data) / (1 << 20)), took  # a few milliseconds a MiB, at most


def test_a_small_request_nested_within_bounds_is_still_read_leniently() -> None:
    data = deep_append(8, 10)
    assert isinstance(lenient.lenient(Append.FromString)(data), Append)


async def test_a_server_answers_a_bad_string_as_any_unknown_id(channel: aio.Channel) -> None:
    get: Any = channel.unary_unary(
        "/tasktrail.v1.TaskService/GetTask",
        request_serializer=None,  # raw bytes, as a client that does not check UTF-8 sends them
        response_deserializer=task_pb2.Task.FromString,
    )
    data = task_service_pb2.GetTaskRequest(task_id="01a22c68-AB00-7000-8000-000000000000").SerializeToString()
    with pytest.raises(aio.AioRpcError) as refused:
        await get(data.replace(b"AB", b"\xffB"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value.details()
    assert "\ufffd" in (refused.value.details() or "")


async def test_a_server_refuses_a_malformed_request_as_invalid_argument(channel: aio.Channel) -> None:
    append: Any = channel.unary_unary(
        "/tasktrail.v1.TaskWriterService/AppendLogEntries",
        request_serializer=None,
        response_deserializer=task_pb2.Task.FromString,
    )
    with pytest.raises(aio.AioRpcError) as refused:
        await append(deep_append(300, 1 << 20))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    follow: Any = channel.unary_stream(
        "/tasktrail.v1.TaskService/FollowTaskLog", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(aio.AioRpcError) as streamed:
        async for _ in follow(b"\x0a\x05ab"):
            pass
    assert streamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
