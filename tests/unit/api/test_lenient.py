"""Requests whose strings are not UTF-8: parsed with U+FFFD in their place,
on a real in-process server as on the bytes alone."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Struct
from grpc import aio

from tasktrail.api import lenient
from tasktrail.v1 import task_pb2, task_service_pb2, writer_service_pb2

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
    assert parsed.task_id == "id\ufffdB"
    assert [e.message for e in parsed.entries] == ["m\ufffdB", "\ufffdB"]
    assert dict(parsed.entries[0].fields) == {"k\ufffdB": "v\ufffdB", "n": 3}
    assert parsed.lease_id == "lease"


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x0a", b"\x08\xff", b"\x0b"])
def test_malformed_messages_still_fail(data: bytes) -> None:
    with pytest.raises(DecodeError):
        lenient.lenient(Append.FromString)(data)


async def test_a_server_answers_a_bad_string_as_any_unknown_id(channel: aio.Channel) -> None:
    get = channel.unary_unary(
        "/tasktrail.v1.TaskService/GetTask",
        request_serializer=None,  # raw bytes, as a client that does not check UTF-8 sends them
        response_deserializer=task_pb2.Task.FromString,
    )
    data = task_service_pb2.GetTaskRequest(task_id="01a22c68-AB00-7000-8000-000000000000").SerializeToString()
    with pytest.raises(aio.AioRpcError) as refused:
        await get(data.replace(b"AB", b"\xffB"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value.details()
    assert "\ufffd" in (refused.value.details() or "")
