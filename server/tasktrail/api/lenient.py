"""Requests that protobuf refuses: strings that are not UTF-8, and worse.

Envoy's transcoder copies a percent-decoded path or query value into a proto
string as it is, so `%ff` in a URL reaches the server as a string that is not
UTF-8, which protobuf refuses to parse. The services are registered with
request parsers that read such strings with U+FFFD in place of the bad bytes
instead, for requests of up to SCRUB_LIMIT bytes (a URL's worth); the request
then meets the checks its fields always get, and a bad id is the dialect's own
400 or 404.

Anything else protobuf refuses (a larger request, a truncated one, one nested
deeper than MAX_DEPTH) becomes a `Malformed` request, which the servicer
answers as INVALID_ARGUMENT in its surface's shape, before any credential is
checked. (A parser that raised would make gRPC answer INTERNAL: a 500.) A
refusal so costs what protobuf's own C parser spends, linear in the request's
size; the Python walk of `scrub` runs only on small requests, with bounded
depth. Requests that parse as they are pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

S = TypeVar("S")
M = TypeVar("M", bound=Message)
# The largest request whose strings are read leniently, and how deep `scrub` goes.
SCRUB_LIMIT = 4096
MAX_DEPTH = 32


class Malformed:
    """A request protobuf refused (it stands in for the message; see `endpoint`)."""

    __slots__ = ("reason", "size")

    def __init__(self, reason: str, size: int) -> None:
        self.reason = reason
        self.size = size

    @property
    def message(self) -> str:
        return f"the request ({self.size} bytes) is not a valid message: {self.reason}"


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


def add_service(add: Callable[[S, Any], None], servicer: S, server: grpc.aio.Server) -> None:
    """Register a servicer as the generated `add_*_to_server` function would,
    with lenient request parsers."""
    seen = _Registrations()
    add(servicer, seen)
    if seen.service is None:
        raise RuntimeError(f"{add.__name__} registered no method handlers")
    handlers = {name: _lenient_handler(handler) for name, handler in seen.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(seen.service, handlers),))
    server.add_registered_method_handlers(seen.service, handlers)


class _Registrations:
    """Stands in for the server in a generated `add_*_to_server` function."""

    def __init__(self) -> None:
        self.service: str | None = None
        self.handlers: Mapping[str, Handler] = {}

    def add_generic_rpc_handlers(self, _handlers: object) -> None:
        """The same handlers arrive again, by name, in add_registered_method_handlers."""

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        self.service, self.handlers = service, handlers


def _lenient_handler(handler: Handler) -> Handler:
    parse = handler.request_deserializer
    if parse is None:
        return handler
    replaced: Handler = handler._replace(request_deserializer=lenient(parse))  # type: ignore[attr-defined]
    return replaced


def lenient(parse: Callable[[bytes], M]) -> Callable[[bytes], M | Malformed]:
    """`parse` (a message class's FromString), reading strings that are not
    UTF-8 with U+FFFD in place of the bad bytes; a `Malformed` for anything
    else it refuses."""
    descriptor: Descriptor = parse.__self__.DESCRIPTOR  # type: ignore[attr-defined]

    def parse_lenient(data: bytes) -> M | Malformed:
        try:
            return parse(data)
        except DecodeError as refused:
            if len(data) > SCRUB_LIMIT:
                return Malformed(str(refused) or "protobuf refused it", len(data))
        try:
            return parse(scrub(data, descriptor))
        except (DecodeError, RecursionError) as refused:
            return Malformed(str(refused) or "protobuf refused it", len(data))

    return parse_lenient


def scrub(data: bytes, descriptor: Descriptor, depth: int = 0) -> bytes:
    """The message `data`, with every string field (nested ones too) made valid UTF-8."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"nested more than {MAX_DEPTH} deep")
    out = bytearray()
    at = 0
    while at < len(data):
        start = at
        key, at = _read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, at = _read_varint(data, at)
        elif wire_type == 1:
            at += 8
        elif wire_type == 5:
            at += 4
        elif wire_type == 2:
            size, body = _read_varint(data, at)
            at = body + size
            if at > len(data):
                raise DecodeError("truncated message")
            value = data[body:at]
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                value = value.decode("utf-8", "replace").encode()
            elif field is not None and field.message_type is not None:
                value = scrub(value, field.message_type, depth + 1)
            out += _varint(key) + _varint(len(value)) + value
            continue
        else:  # groups: not in proto3
            raise DecodeError(f"unexpected wire type {wire_type}")
        if at > len(data):
            raise DecodeError("truncated message")
        out += data[start:at]
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise DecodeError("bad varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
