"""What an operator watches, on the real stack: the metrics address `up` serves
(every server process's counts, summed) moves with the work done, Envoy's own
stats are there too, and with --log-format json a request can be followed from
Envoy's access log to the server's request log by its x-request-id."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasktrail.client import TaskClient
from tasktrail.v1 import task_pb2, writer_service_pb2
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at the metrics address: (name, labels) → value."""
    text = httpx.get(stack.metrics, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_the_metrics_move_with_the_work(stack: Stack) -> None:
    before = scrape(stack)
    writer = stack.writer
    created = writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(
            scope=task_pb2.SCOPE_DATABASE, entity_id="metrics", type="node_backup", request_id=str(uuid.uuid4())
        ),
        timeout=10,
    ).task
    entries = [task_pb2.LogEntry(message=f"line {i}") for i in range(3)]
    writer.AppendLogEntries(
        writer_service_pb2.AppendLogEntriesRequest(task_id=created.task_id, entries=entries), timeout=10
    )
    with TaskClient(stack.grpc_target, stack.token) as client:
        client.get(created.task_id)
        follow = client.follow(created.task_id)
        seen = iter(follow)
        assert next(seen).message == "line 0"  # a tail delivered a frame
        writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=created.task_id, status=task_pb2.TASK_STATUS_RUNNING),
            timeout=10,
        )
        writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=created.task_id, status=task_pb2.TASK_STATUS_COMPLETED),
            timeout=10,
        )
        assert [e.message for e in seen] == ["line 1", "line 2"]
    assert httpx.get(f"{stack.rest}/v1/databases/metrics/tasks/{uuid.uuid4()}", timeout=10).status_code == 404
    after = scrape(stack)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("tasktrail_tasks_created_total", scope="database", type="node_backup") == 1
    assert grew("tasktrail_tasks_ended_total", scope="database", type="node_backup", status="completed") == 1
    assert grew("tasktrail_log_entries_total") == 3
    assert grew("tasktrail_log_bytes_total") == len("line 0") * 3
    assert grew("tasktrail_requests_total", surface="native", method="GetTask", code="OK") == 1
    assert grew("tasktrail_requests_total", surface="native", method="AppendLogEntries", code="OK") == 1
    assert grew("tasktrail_requests_total", surface="native", method="FollowTaskLog", code="OK") == 1
    assert grew("tasktrail_requests_total", surface="controlplane", method="GetDatabaseTask", code="404") == 1
    assert grew("tasktrail_request_duration_seconds_count", surface="native", method="GetTask") == 1
    assert grew("tasktrail_follow_frames_total") >= 1
    assert grew("tasktrail_follow_lag_seconds_count") >= 1
    assert grew("tasktrail_store_duration_seconds_count", op="write") >= 4
    # Envoy's own, at its admin address.
    envoy = httpx.get(f"http://{stack.admin}/stats/prometheus", timeout=10).text
    assert "envoy_cluster_upstream_rq_total" in envoy


def test_a_request_is_followed_from_envoy_to_the_server_by_its_id(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "stack", "--log-format", "json", "--no-sample")
    try:
        request_id = f"trace-{uuid.uuid4()}"
        created = stack.writer.CreateTask(
            writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="traced", type="update"),
            timeout=10,
        ).task
        cancel = httpx.get(
            f"{stack.rest}/v1/databases/traced/tasks/{created.task_id}/cancel",
            headers={"x-request-id": request_id},
            timeout=10,
        )
        assert cancel.status_code == 200
        assert cancel.headers["x-request-id"] == request_id  # answered back, for a client's support ticket
        logs = stack.data_dir / "logs"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            server = [json.loads(line) for f in logs.glob("server-*.log") for line in f.read_text().splitlines()]
            access = [json.loads(line) for line in (logs / "access.log").read_text().splitlines()]
            server_line = next((x for x in server if x.get("request_id") == request_id), None)
            access_line = next((x for x in access if x.get("request_id") == request_id), None)
            if server_line and access_line:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"{request_id} not in both logs")
        # Every server line is JSON (json.loads above) with the common fields.
        assert {"time", "level", "logger", "message"} <= set(server[0])
        assert server_line["surface"] == "controlplane"
        assert server_line["method"] == "CancelDatabaseTask"
        assert server_line["code"] == "OK"
        assert server_line["duration_ms"] > 0
        assert stack.token not in json.dumps(server)  # a caller is named by its token's id, never its secret
        assert access_line["path"] == f"/v1/databases/traced/tasks/{created.task_id}/cancel"
        assert access_line["code"] == 200
        assert access_line["method"] == "GET"  # as the client sent it, not the transcoded POST
    finally:
        stop_stack(stack)
