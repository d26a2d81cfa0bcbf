"""The pgEdge task documentation's curl commands, unchanged but for the host,
against the sample data `tasktrail up` writes: exact JSON."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tasktrail.edge import sample
from tasktrail.v1 import task_service_pb2
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

DOC_TASK = sample.DOC_TASK_ID


def curl(url: str) -> tuple[int, Any]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", url], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


def rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def native(stack: Stack, task_id: str) -> Any:
    return stack.reader.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=10).task


def expected_task(stack: Stack, task_id: str) -> dict[str, Any]:
    """The task as pgEdge renders it, built from the native API's view of it."""
    t = native(stack, task_id)
    scope = {1: "database", 2: "host"}[t.scope]
    out: dict[str, Any] = {"scope": scope, "entity_id": t.entity_id}
    out["database_id" if scope == "database" else "host_id"] = t.entity_id
    for name in ("parent_id", "node_name", "instance_id"):
        if getattr(t, name):
            out[name] = getattr(t, name)
    out["task_id"] = t.task_id
    out["created_at"] = rfc3339(t.created_at.seconds)
    if t.HasField("completed_at"):
        out["completed_at"] = rfc3339(t.completed_at.seconds)
    out["type"] = t.type
    out["status"] = {1: "pending", 2: "running", 3: "canceling", 4: "completed", 5: "failed", 6: "canceled"}[t.status]
    if t.status == 5:
        out["error"] = t.error.message
    return out


def expected_entries(stack: Stack, indexes: range) -> list[dict[str, Any]]:
    log = stack.reader.GetTaskLog(task_service_pb2.GetTaskLogRequest(task_id=DOC_TASK), timeout=10)
    out = []
    for i in indexes:
        message, fields = sample.DOC_LOG[i]
        entry: dict[str, Any] = {"timestamp": rfc3339(log.entries[i].timestamp.seconds), "message": message}
        if fields:
            entry["fields"] = fields
        out.append(entry)
    return out


def log_body(stack: Stack, indexes: range) -> dict[str, Any]:
    return {
        "scope": "database",
        "entity_id": "example",
        "database_id": "example",
        "task_id": DOC_TASK,
        "task_status": "completed",
        "last_entry_id": sample.DOC_ENTRY_IDS[-1],
        "entries": expected_entries(stack, indexes),
    }


def test_list_tasks(stack: Stack) -> None:
    code, body = curl(f"{stack.rest}/v1/databases/example/tasks")
    assert code == 200
    ids = [t["task_id"] for t in body["tasks"]]
    assert len(ids) == 8
    assert ids[-1] == DOC_TASK  # newest first; the documented task was written first
    assert body == {"tasks": [expected_task(stack, i) for i in ids]}


def test_list_tasks_paginated_ascending(stack: Stack) -> None:
    all_ids = [t["task_id"] for t in curl(f"{stack.rest}/v1/databases/example/tasks")[1]["tasks"]]
    code, body = curl(
        f"{stack.rest}/v1/databases/example/tasks?limit=5&after_task_id=404ecbe0-5cda-11f0-900b-a74a79e3bdba&sort_order=asc"
    )
    assert code == 200
    # The cursor is a v1 UUID of 2025-07-10: every sample task comes after it.
    assert body == {"tasks": [expected_task(stack, i) for i in list(reversed(all_ids))[:5]]}


def test_get_task(stack: Stack) -> None:
    code, body = curl(f"{stack.rest}/v1/databases/example/tasks/d3cd2fab-4b1f-4eb9-b614-181c10b07acd")
    assert code == 200
    assert body == expected_task(stack, DOC_TASK)
    assert body["type"] == "create"
    assert body["status"] == "completed"


def test_get_log(stack: Stack) -> None:
    code, body = curl(f"{stack.rest}/v1/databases/example/tasks/d3cd2fab-4b1f-4eb9-b614-181c10b07acd/log")
    assert code == 200
    assert body == log_body(stack, range(8))


def test_get_log_after_entry(stack: Stack) -> None:
    code, body = curl(
        f"{stack.rest}/v1/databases/example/tasks/d3cd2fab-4b1f-4eb9-b614-181c10b07acd/log"
        "?after_entry_id=0d639fbe-72bf-41ca-a81d-f7a524083cd4"
    )
    assert code == 200
    assert body == log_body(stack, range(5, 8))


def test_get_log_limit(stack: Stack) -> None:
    code, body = curl(f"{stack.rest}/v1/databases/example/tasks/d3cd2fab-4b1f-4eb9-b614-181c10b07acd/log?limit=10")
    assert code == 200
    assert body == log_body(stack, range(8))
    code, body = curl(f"{stack.rest}/v1/databases/example/tasks/d3cd2fab-4b1f-4eb9-b614-181c10b07acd/log?limit=3")
    assert body == log_body(stack, range(5, 8))  # the most recent 3


def test_host_tasks_and_plural_logs(stack: Stack) -> None:
    code, body = curl(f"{stack.rest}/v1/hosts/host-1/tasks")
    assert code == 200
    [task] = body["tasks"]
    assert task == expected_task(stack, task["task_id"])
    code, got = curl(f"{stack.rest}/v1/hosts/host-1/tasks/{task['task_id']}")
    assert (code, got) == (200, task)
    code, log = curl(f"{stack.rest}/v1/hosts/host-1/tasks/{task['task_id']}/logs")
    assert code == 200
    assert [e["message"] for e in log["entries"]] == ["removing host host-1 from the cluster", "host removed"]
    assert {k: v for k, v in log.items() if k != "entries"} == {
        "scope": "host",
        "entity_id": "host-1",
        "task_id": task["task_id"],
        "task_status": "completed",
        "last_entry_id": log["last_entry_id"],
    }
