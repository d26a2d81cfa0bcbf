"""OpenAPI 3 documents of the three REST faces, generated (`make gen`) from the
descriptor set and served by Envoy at /v1/openapi.json on each port.

The descriptor set gives the paths and methods (each method's google.api.http
rule), the path and query parameters (the request message's fields), and the
shape of every answer: each message's fields, named as that port prints them
(proto names, or JSON names on the cloud port), with the fields a port always
prints (plain scalars and lists: the transcoder prints them even when empty)
required, and the ones it omits when empty (`optional` scalars, messages) not.
A `Face` adds what a proto cannot say: formats and enums of string fields,
the error shape and its status codes, headers, media types of the streams,
answers a server renders itself (google.api.HttpBody), and security.

    python -m tasktrail.edge.openapi gen/tasktrail.binpb gen

It also writes the native API's gRPC service config (retry policies), for
clients in other languages to load.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

Schema = dict[str, Any]

UUID: Schema = {"type": "string", "format": "uuid"}
TIME: Schema = {"type": "string", "format": "date-time"}
IDENTIFIER: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 36,
    "pattern": "^[a-z0-9](?:[a-z0-9-]{0,34}[a-z0-9])?$",
}
CONTROLPLANE_STATUS: Schema = {
    "type": "string",
    "enum": ["pending", "running", "completed", "canceled", "canceling", "failed", "unknown"],
}
SORT_ORDER: Schema = {"type": "string", "enum": ["asc", "ascend", "ascending", "desc", "descend", "descending"]}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}}


@dataclass(frozen=True)
class Face:
    """One REST port, and what its protos do not say."""

    name: str
    service: str
    title: str
    description: str
    server: str
    json_names: bool
    error: Schema
    # Status codes any call may answer with the error shape, and the ones a method adds.
    statuses: dict[int, str]
    method_statuses: dict[str, dict[int, str]] = field(default_factory=dict)
    # "Message.field" → the field's schema (replacing what the proto gives).
    fields: dict[str, Schema] = field(default_factory=dict)
    # Parameter name → its schema and description.
    params: dict[str, Schema] = field(default_factory=dict)
    # Method → its answer's schema, for answers rendered by the server (HttpBody).
    bodies: dict[str, Schema] = field(default_factory=dict)
    # Method → the media types of a streamed answer.
    streams: dict[str, dict[str, str]] = field(default_factory=dict)
    # Method → request headers it reads.
    headers: dict[str, list[Schema]] = field(default_factory=dict)
    # Headers on every successful answer.
    answer_headers: dict[str, Any] = field(default_factory=dict)
    security: dict[str, Schema] = field(default_factory=dict)
    # A query parameter sent empty counts as absent (the original's rule).
    empty_is_absent: bool = False


def controlplane() -> Face:
    t = "Task."
    return Face(
        name="controlplane",
        service="tasktrail.controlplane.v1.ControlPlaneTaskService",
        title="tasktrail: control-plane task API",
        description=(
            "The pgEdge Control Plane task API (scoped tasks, logs and cancel), served by tasktrail; "
            "plus live log tails (NDJSON, SSE). docs/control-plane-api.md has every decision."
        ),
        server="http://localhost:3000",
        json_names=False,
        empty_is_absent=True,
        security={
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A reader token, when the port was started with --controlplane-auth.",
            }
        },
        error={
            "type": "object",
            "description": "An API error: a designed one ({name, message}) or a request refused by its "
            "validation (Goa's shape: id, temporary, timeout and fault too).",
            "required": ["name", "message"],
            "properties": {
                "name": {"type": "string", "description": "The error's name, also in the goa-error header."},
                "message": {"type": "string"},
                "id": {"type": "string"},
                "temporary": {"type": "boolean"},
                "timeout": {"type": "boolean"},
                "fault": {"type": "boolean"},
            },
        },
        statuses={
            400: "invalid_input, or a parameter refused (invalid_format, invalid_field_type, …)",
            405: "method_not_allowed: the path takes other methods (named in Allow)",
            429: "too_many_requests (an account or token over its request limit)",
            500: "server_error",
            503: "service_unavailable: the store cannot be reached, or no server answers; retry",
        },
        method_statuses={
            m: {404: "not_found: no such task here"}
            for m in (
                "GetDatabaseTask",
                "GetDatabaseTaskLog",
                "CancelDatabaseTask",
                "GetHostTask",
                "GetHostTaskLog",
                "FollowDatabaseTaskLog",
                "FollowHostTaskLog",
            )
        }
        | {"CancelDatabaseTask": {404: "not_found", 507: "insufficient_storage: the store has no room left"}},
        fields={
            t + "scope": {"type": "string", "enum": ["database", "host"]},
            t + "task_id": UUID,
            t + "parent_id": UUID,
            t + "created_at": TIME,
            t + "completed_at": TIME,
            t + "status": CONTROLPLANE_STATUS,
            "TaskLog.scope": {"type": "string", "enum": ["database", "host"]},
            "TaskLog.task_id": UUID,
            "TaskLog.task_status": CONTROLPLANE_STATUS,
            "TaskLog.last_entry_id": UUID,
            "TaskLog.database_id": {"type": "string", "deprecated": True, "description": "Use entity_id."},
            "TaskLogEntry.timestamp": TIME,
            "TaskLogEntry.fields": {"type": "object", "additionalProperties": True},
        },
        params={
            "database_id": IDENTIFIER,
            "host_id": IDENTIFIER,
            "entity_id": IDENTIFIER,
            "task_id": UUID,
            "after_task_id": UUID,
            "after_entry_id": UUID,
            "limit": {"type": "integer", "format": "int64"},
            "sort_order": SORT_ORDER,
            "scope": {"type": "string", "enum": ["database", "host"]},
        },
        streams={
            m: {
                "application/x-ndjson": "One JSON object a line: the log's entries as they are written, then "
                "the task's end (docs/live-tails.md).",
                "text/event-stream": "Server-Sent Events: `entry` events (id: the entry id, for "
                "Last-Event-ID), then `end`.",
            }
            for m in ("FollowDatabaseTaskLog", "FollowHostTaskLog")
        },
    )


def cloud() -> Face:
    return Face(
        name="cloud",
        service="tasktrail.cloud.v1.CloudTaskService",
        title="tasktrail: cloud task API",
        description=(
            "The Redis Cloud task API (an account's asynchronous operations), served by tasktrail. "
            "docs/cloud-api.md has every decision."
        ),
        server="https://localhost:8443",
        json_names=True,
        error={
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["type", "status", "description"],
                    "properties": {
                        "type": {"type": "string", "example": "TASK_NOT_FOUND"},
                        "status": {"type": "string", "example": "404 NOT_FOUND"},
                        "description": {"type": "string"},
                    },
                }
            },
        },
        statuses={
            400: "BAD_REQUEST",
            405: "METHOD_NOT_ALLOWED: only GET (named in Allow)",
            401: "UNAUTHORIZED: the API keys are missing, unknown or revoked",
            403: "FORBIDDEN",
            429: "TOO_MANY_REQUESTS: over the account's rate limit",
            500: "GENERAL_ERROR",
            503: "SERVICE_UNAVAILABLE: retry",
        },
        method_statuses={"GetTask": {404: "TASK_NOT_FOUND"}},
        fields={
            "Task.taskId": UUID,
            "Task.status": {
                "type": "string",
                "enum": [
                    "initialized",
                    "received",
                    "processing-in-progress",
                    "processing-completed",
                    "processing-error",
                ],
            },
            "Task.timestamp": TIME,
            "Task.links": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
            "TaskResponse.resource": {"type": "object", "additionalProperties": True},
        },
        params={"task_id": UUID},
        answer_headers={
            "x-rate-limit-remaining": {
                "description": "Requests left in this minute for the account's key.",
                "schema": {"type": "integer"},
            }
        },
        security={
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "x-api-secret-key": {"type": "apiKey", "in": "header", "name": "x-api-secret-key"},
        },
    )


def crdb() -> Face:
    task = {"$ref": "#/components/schemas/CrdbTask"}
    return Face(
        name="crdb",
        service="tasktrail.crdb.v1.CrdbTaskService",
        title="tasktrail: enterprise CRDB task API",
        description=(
            "The Redis Enterprise /v1/crdb_tasks API (Active-Active database tasks), served by tasktrail. "
            "docs/enterprise-api.md has every decision."
        ),
        server="https://localhost:9443",
        json_names=False,
        error={
            "type": "object",
            "required": ["error_code", "description"],
            "properties": {"error_code": {"type": "string"}, "description": {"type": "string"}},
        },
        statuses={
            400: "invalid_header, bad_request",
            405: "method_not_allowed (the methods the path takes are in Allow)",
            401: "unauthorized",
            429: "too_many_requests",
            500: "internal_error",
            503: "service_unavailable: retry",
        },
        method_statuses={
            "GetCrdbTask": {404: "task_not_found"},
            "CancelCrdbTask": {
                404: "task_not_found",
                406: "task_in_commit_phase, task_not_cancelable",
                409: "cancel_in_progress",
                507: "insufficient_storage",
            },
        },
        fields={
            "CrdbTask.status": {"type": "string", "enum": ["queued", "started", "finished", "failed"]},
            "CrdbTask.started": TIME,
            "CrdbTask.ended": TIME,
        },
        params={
            "task_id": {"type": "string", "minLength": 1, "maxLength": 64},
            "verbose": {"type": "boolean", "description": "return detailed task information"},
            "force": {"type": "boolean", "description": "cancel through the commit phase"},
        },
        bodies={"ListCrdbTasks": {"type": "array", "items": task}},
        headers={
            "GetCrdbTask": [
                {
                    "name": "X-Result-TTL",
                    "in": "header",
                    "description": "Keep the task's result this many seconds more (the task time to live).",
                    "schema": {"type": "integer", "minimum": 0},
                }
            ]
        },
        security={"basic": {"type": "http", "scheme": "basic"}},
    )


FACES = (controlplane, cloud, crdb)
_FLAG = {"controlplane": "rest", "cloud": "cloud", "crdb": "crdb"}

_SCALARS: dict[int, Schema] = {
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: {"type": "string"},
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: {"type": "boolean"},
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: {"type": "number"},
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: {"type": "number"},
    # proto3 JSON writes 64-bit integers as strings.
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: {"type": "string", "format": "int64"},
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: {"type": "string", "format": "int64"},
}
_WELL_KNOWN: dict[str, Schema] = {
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.Timestamp": TIME,
}


class Descriptors:
    """The messages and services of a descriptor set, by full name."""

    def __init__(self, data: bytes) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(data)
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        for file in files.file:
            for message in file.message_type:
                self._add(f".{file.package}", message)
            for service in file.service:
                self.services[f"{file.package}.{service.name}"] = service

    def _add(self, prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = message
        for nested in message.nested_type:
            self._add(name, nested)


def document(face: Face, descriptors: Descriptors) -> dict[str, Any]:
    """The face's OpenAPI document."""
    schemas: dict[str, Schema] = {"Error": face.error}
    paths: dict[str, dict[str, Any]] = {}
    service = descriptors.services[face.service]
    for method in service.method:
        rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
        request = descriptors.messages[method.input_type]
        answer = _answer(face, method, descriptors, schemas)
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            assert verb is not None, method.name
            template: str = getattr(binding, verb)
            path = template
            in_path = [part[1:-1] for part in template.split("/") if part.startswith("{")]
            parameters = [_parameter(face, f, "path" if f.name in in_path else "query") for f in request.field]
            parameters += face.headers.get(method.name, [])
            operation: dict[str, Any] = {
                "operationId": method.name if binding is rule else f"{method.name}_{verb}",
                "summary": _words(method.name),
                "parameters": parameters,
                "responses": _responses(face, method.name, answer),
            }
            paths.setdefault(path, {})[verb] = operation
    scheme, port = face.server.split("://")[0], face.server.rsplit(":", 1)[1]
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": face.title,
            "version": "1",
            "description": face.description,
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "servers": [
            {
                "url": f"{scheme}://{{host}}:{{port}}",
                "variables": {
                    "host": {"default": "localhost", "description": "where tasktrail runs (`--host`)"},
                    "port": {"default": port, "description": f"this port (`--{_FLAG[face.name]}-port`)"},
                },
            }
        ],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
    doc["components"]["securitySchemes"] = face.security
    doc["security"] = [{key: [] for key in face.security}]
    if face.name == "controlplane":
        doc["security"].insert(0, {})  # none, unless the port was started with --controlplane-auth
    doc["paths"]["/v1/openapi.json"] = _self_description()
    return doc


def _self_description() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "GetOpenAPI",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document of this port.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "405": {"description": "Only GET."},
            },
        }
    }


def _answer(
    face: Face,
    method: descriptor_pb2.MethodDescriptorProto,
    descriptors: Descriptors,
    schemas: dict[str, Schema],
) -> dict[str, Any]:
    """The content of a successful answer."""
    if method.name in face.streams:
        return {
            media: {"schema": {"type": "string", "description": what}}
            for media, what in face.streams[method.name].items()
        }
    if method.name in face.bodies:
        return {"application/json": {"schema": face.bodies[method.name]}}
    _message_schema(face, method.output_type, descriptors, schemas)
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{_short(method.output_type)}"}}}


def _message_schema(face: Face, full_name: str, descriptors: Descriptors, schemas: dict[str, Schema]) -> None:
    name = _short(full_name)
    if name in schemas or full_name in _WELL_KNOWN:
        return
    message = descriptors.messages[full_name]
    schemas[name] = {}  # placed first: a message that holds itself ends here
    properties: dict[str, Schema] = {}
    required: list[str] = []
    for f in message.field:
        key = f.json_name if face.json_names else f.name
        repeated = f.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
            if f.type_name in _WELL_KNOWN:
                schema: Schema = dict(_WELL_KNOWN[f.type_name])
            else:
                _message_schema(face, f.type_name, descriptors, schemas)
                schema = {"$ref": f"#/components/schemas/{_short(f.type_name)}"}
        else:
            schema = dict(_SCALARS.get(f.type, {"type": "string"}))
        if repeated:
            schema = {"type": "array", "items": schema}
        schema = face.fields.get(f"{name}.{key}", schema)
        properties[key] = schema
        # The transcoder prints plain scalars and lists even when empty (always_print_primitive_fields);
        # `optional` scalars and messages only when set.
        if repeated or (f.type != descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE and not f.proto3_optional):
            required.append(key)
    schemas[name] = {"type": "object", "properties": properties}
    if required:
        schemas[name]["required"] = required


def _parameter(face: Face, f: descriptor_pb2.FieldDescriptorProto, where: str) -> dict[str, Any]:
    schema = face.params.get(f.name) or dict(_SCALARS.get(f.type, {"type": "string"}))
    parameter: dict[str, Any] = {"name": f.name, "in": where, "required": where == "path", "schema": schema}
    if where == "query" and face.empty_is_absent:
        parameter["allowEmptyValue"] = True
    if "description" in schema:
        parameter["description"] = schema["description"]
    return parameter


def _responses(face: Face, method: str, answer: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK", "content": answer}
    if face.answer_headers:
        ok["headers"] = face.answer_headers
    responses: dict[str, Any] = {"200": ok}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for status, what in sorted({**face.statuses, **face.method_statuses.get(method, {})}.items()):
        response: dict[str, Any] = {"description": what, "content": error}
        if status in (429, 503, 507):
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def _short(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


def _words(name: str) -> str:
    out = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return out[:1].upper() + out[1:]


# Native methods a client may send again as they are after UNAVAILABLE (gRPC's
# retry policy resends the same bytes). CreateTask and AppendLogEntries are safe
# only with their request_id / append_id, which a generic client may not send:
# they are left out (the SDK retries them itself, with their keys).
_RETRIED = {
    "tasktrail.v1.TaskService": ("GetTask", "ListTasks", "GetTaskLog", "WaitTask", "CancelTask"),
    "tasktrail.v1.TaskWriterService": ("ClaimTask", "Heartbeat", "UpdateTask"),
}


def service_config(descriptors: Descriptors) -> dict[str, Any]:
    """A gRPC service config for clients in any language: retries with backoff
    on UNAVAILABLE for the methods that are safe to send again."""
    names = []
    for service, methods in _RETRIED.items():
        known = {m.name for m in descriptors.services[service].method}
        assert set(methods) <= known, set(methods) - known
        names += [{"service": service, "method": method} for method in methods]
    return {
        "methodConfig": [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def main(argv: list[str]) -> int:
    """Write gen/openapi/<face>.json and gen/grpc_service_config.json."""
    descriptor_set, out = Path(argv[0]), Path(argv[1])
    descriptors = Descriptors(descriptor_set.read_bytes())
    (out / "openapi").mkdir(parents=True, exist_ok=True)
    for make in FACES:
        face = make()
        text = json.dumps(document(face, descriptors), indent=2) + "\n"
        (out / "openapi" / f"{face.name}.json").write_text(text)
    (out / "grpc_service_config.json").write_text(json.dumps(service_config(descriptors), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
