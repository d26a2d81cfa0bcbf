"""gRPC clients that are not ours, through port 50051: Node's @grpc/grpc-js,
loading the descriptor set from gen/, lists and reads tasks; a client that knows
nothing but what server reflection (v1 or v1alpha) tells it calls the API; the
published service config loads in both and retries what it names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent.parent / "interop" / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the interop test (Debian: apt install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True, timeout=300)
    return NODE_DIR / "client.js"


def test_node_client_lists_and_reads(stack: Stack, node_client: Path) -> None:
    out = subprocess.run(
        [
            "node",
            str(node_client),
            stack.grpc_target,
            str(ROOT / "gen" / "tasktrail.binpb"),
            "example",
            stack.token,
            str(ROOT / "gen" / "grpc_service_config.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    got = json.loads(out)
    expected = stack.reader.ListTasks(
        task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="example", page_size=3), timeout=10
    )
    assert [t["task_id"] for t in got["page"]["tasks"]] == [t.task_id for t in expected.tasks]
    assert got["page"]["next_page_token"] == expected.next_page_token != ""
    task = got["task"]["task"]
    assert task["scope"] == "SCOPE_DATABASE"
    assert task["entity_id"] == "example"
    assert task["task_id"] == expected.tasks[-1].task_id
    log = got["log"]
    assert log["task_id"] == task["task_id"]
    native = stack.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=task["task_id"]), timeout=10)
    assert [e["message"] for e in log.get("entries", [])] == [e.message for e in native.entries]
    assert got["missing"]["code"] == 5  # NOT_FOUND


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_a_reflection_client_finds_and_calls_the_api(stack: Stack, version: str) -> None:
    """As grpcurl, buf curl or grpcui do, through Envoy: list the services, fetch
    the files that describe one (and their imports), and call it with messages
    built from those descriptors alone."""
    channel = grpc.insecure_channel(stack.grpc_target)
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    def ask(**question: str) -> reflection_pb2.ServerReflectionResponse:
        [reply] = info(iter([reflection_pb2.ServerReflectionRequest(**question)]), timeout=10)
        assert not reply.HasField("error_response"), reply.error_response
        return reply

    try:
        services = {s.name for s in ask(list_services="").list_services_response.service}
        assert {
            "tasktrail.v1.TaskService",
            "tasktrail.v1.TaskWriterService",
            "tasktrail.controlplane.v1.ControlPlaneTaskService",
            "tasktrail.cloud.v1.CloudTaskService",
            "tasktrail.crdb.v1.CrdbTaskService",
            "grpc.health.v1.Health",
            f"grpc.reflection.{version}.ServerReflection",
        } <= services

        files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

        def fetch(reply: reflection_pb2.ServerReflectionResponse) -> None:
            for raw in reply.file_descriptor_response.file_descriptor_proto:
                file = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files[file.name] = file

        fetch(ask(file_containing_symbol="tasktrail.v1.TaskService"))
        while missing := {d for f in files.values() for d in f.dependency} - files.keys():
            for name in missing:
                fetch(ask(file_by_filename=name))
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        while len(added) < len(files):
            for name, file in files.items():
                if name not in added and set(file.dependency) <= added:
                    pool.Add(file)
                    added.add(name)

        method = pool.FindMethodByName("tasktrail.v1.TaskService.ListTasks")
        request_type = message_factory.GetMessageClass(method.input_type)
        reply_type = message_factory.GetMessageClass(method.output_type)
        list_tasks = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=reply_type.FromString,
        )
        request = json_format.ParseDict(
            {"scope": "SCOPE_DATABASE", "entityId": "example", "pageSize": 2}, request_type()
        )
        page = list_tasks(request, metadata=(("authorization", f"Bearer {stack.token}"),), timeout=10)
        expected = stack.reader.ListTasks(
            task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="example", page_size=2),
            timeout=10,
        )
        assert json_format.MessageToDict(page) == json_format.MessageToDict(expected)
        assert len(expected.tasks) == 2

        # The reflection service describes itself too, in either version.
        ask(file_containing_symbol=f"grpc.reflection.{version}.ServerReflection")
    finally:
        channel.close()


def test_the_service_config_loads(stack: Stack) -> None:
    """gRPC validates a service config when a channel is made: ours is taken and
    names the reads (a bad one is refused, so the check bites)."""
    config = (ROOT / "gen" / "grpc_service_config.json").read_text()
    named = {(n["service"], n.get("method")) for m in json.loads(config)["methodConfig"] for n in m["name"]}
    assert ("tasktrail.v1.TaskService", "GetTask") in named
    assert ("tasktrail.v1.TaskWriterService", "AppendLogEntries") not in named  # only with an append_id
    request = task_service_pb2.ListTasksRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="example")
    auth = (("authorization", f"Bearer {stack.token}"),)
    with grpc.insecure_channel(stack.grpc_target, options=[("grpc.service_config", config)]) as channel:
        assert task_service_pb2_grpc.TaskServiceStub(channel).ListTasks(request, metadata=auth, timeout=10).tasks
    bad = '{"methodConfig": [{"name": [{}], "retryPolicy": {}}]}'
    with (
        grpc.insecure_channel(stack.grpc_target, options=[("grpc.service_config", bad)]) as channel,
        pytest.raises(grpc.RpcError, match="service config"),
    ):
        task_service_pb2_grpc.TaskServiceStub(channel).ListTasks(request, metadata=auth, timeout=10)
