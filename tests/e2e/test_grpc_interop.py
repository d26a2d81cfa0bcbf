"""A gRPC client that is not Python (Node's @grpc/grpc-js, loading the
descriptor set from gen/) lists and reads tasks through port 50051."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasktrail.v1 import task_pb2, task_service_pb2
from tests.conftest import ROOT, Stack

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
        ["node", str(node_client), stack.grpc_target, str(ROOT / "gen" / "tasktrail.binpb"), "example", stack.token],
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
