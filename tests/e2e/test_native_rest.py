"""The native API's REST face on port 3000 (/api/v1, the web console's API) and
the console's files, through Envoy: anyone sees what port 3000 shows anyone, a
token what its grants cover; the mark that lets a caller in without a
credential cannot be forged on the gRPC port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2
from tests.e2e.test_tails import append, complete, running_task, sse_events
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SAMPLE = "d3cd2fab-4b1f-4eb9-b614-181c10b07acd"


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest, timeout=10) as client:
        yield client


def bearer(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


def scopes(answer: dict[str, Any]) -> set[str]:
    return {t["scope"] for t in answer["tasks"]}


def test_anyone_sees_what_port_3000_shows_anyone(stack: Stack, http: httpx.Client) -> None:
    everything = http.get("/api/v1/tasks", params={"page_size": 500}, headers=bearer(stack)).json()
    assert scopes(everything) == {"SCOPE_DATABASE", "SCOPE_HOST", "SCOPE_ACCOUNT", "SCOPE_CRDB"}
    anyone = http.get("/api/v1/tasks", params={"page_size": 500}).json()
    assert scopes(anyone) == {"SCOPE_DATABASE", "SCOPE_HOST"}
    hidden = next(t["task_id"] for t in everything["tasks"] if t["scope"] == "SCOPE_ACCOUNT")
    # What the caller may not see does not exist for it: NOT_FOUND, as for a token.
    refused = http.get(f"/api/v1/tasks/{hidden}")
    assert refused.status_code == 404
    assert refused.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert http.get(f"/api/v1/tasks/{hidden}", headers=bearer(stack)).json()["task"]["task_id"] == hidden


def test_a_task_its_log_and_filters(stack: Stack, http: httpx.Client) -> None:
    task = http.get(f"/api/v1/tasks/{SAMPLE}").json()["task"]
    assert (task["type"], task["status"], task["entity_id"]) == ("create", "TASK_STATUS_COMPLETED", "example")
    log = http.get(f"/api/v1/tasks/{SAMPLE}/log", params={"page_size": 3}).json()
    assert log["entries"][0]["message"] == "refreshing current state"
    assert log["has_more"] is True
    params: dict[str, str | int] = {
        "scope": "SCOPE_DATABASE",
        "entity_id": "example",
        "statuses": "TASK_STATUS_COMPLETED",
        "page_size": 2,
    }
    page = http.get("/api/v1/tasks", params=params).json()
    assert len(page["tasks"]) == 2
    assert {t["status"] for t in page["tasks"]} == {"TASK_STATUS_COMPLETED"}
    more = http.get("/api/v1/tasks", params={**params, "page_token": page["next_page_token"]}).json()
    assert not {t["task_id"] for t in more["tasks"]} & {t["task_id"] for t in page["tasks"]}


def test_a_refused_token_and_bad_input(stack: Stack, http: httpx.Client) -> None:
    refused = http.get("/api/v1/tasks", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.json()["message"] == "the token is unknown or revoked"
    wrong = http.get("/api/v1/tasks", params={"statuses": "SOMETIMES"})
    assert wrong.status_code == 400
    assert http.delete(f"/api/v1/tasks/{SAMPLE}").status_code == 405
    assert http.get(f"/api/v1/tasks/{SAMPLE}/cancel").headers["allow"] == "POST"


def test_cancel(stack: Stack, http: httpx.Client) -> None:
    task_id = running_task(stack, "console")
    answer = http.post(f"/api/v1/tasks/{task_id}/cancel", json={})
    assert answer.status_code == 200
    assert answer.json()["task"]["status"] == "TASK_STATUS_CANCELING"
    ended = http.post(f"/api/v1/tasks/{SAMPLE}/cancel", json={})
    assert ended.status_code == 400
    assert ended.json()["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]


def test_the_log_as_sse_resumes_after_last_event_id(stack: Stack, http: httpx.Client) -> None:
    task_id = running_task(stack, "console")
    ids = append(stack, task_id, "one", "two")
    url = f"/api/v1/tasks/{task_id}/log/stream"
    headers = {"Accept": "text/event-stream", **bearer(stack)}
    with http.stream("GET", url, headers=headers) as reply:
        assert reply.headers["content-type"] == "text/event-stream"
        events = sse_events(reply.iter_lines())
        assert next(events) == {"retry": "2000"}
        got = []
        for event in events:
            if event["event"] == "entry":
                assert event["id"] == event["data"]["entry_id"]
                got.append(event["data"]["message"])
                if len(got) == 2:
                    break
    assert got == ["one", "two"]
    later = append(stack, task_id, "three")
    complete(stack, task_id)
    with http.stream("GET", url, headers={**headers, "Last-Event-ID": ids[0]}) as reply:
        resumed = list(sse_events(reply.iter_lines()))
    entries = [e for e in resumed if e.get("event") == "entry"]
    assert [e["id"] for e in entries] == [ids[1], *later]
    assert resumed[-1] == {"event": "end", "data": {"end": {"task_status": "TASK_STATUS_COMPLETED"}}}
    # NDJSON without the Accept header, from the start.
    lines = [json.loads(line) for line in http.get(url).text.splitlines()]
    assert [x["message"] for x in lines if "message" in x] == ["one", "two", "three"]


def test_the_anonymous_mark_cannot_be_forged_on_the_grpc_port(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            reader.GetTask(
                task_service_pb2.GetTaskRequest(task_id=SAMPLE), metadata=(("x-tasktrail-anonymous", "1"),), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Nor does the mark stand in for a writer's token on port 3000: the writer API is not routed there.
    create = writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="x", type="t")
    forged = httpx.post(
        f"{stack.rest}/tasktrail.v1.TaskWriterService/CreateTask",
        content=create.SerializeToString(),
        headers={"content-type": "application/grpc", "x-tasktrail-anonymous": "1"},
        timeout=10,
    )
    assert forged.status_code in (404, 405)


def test_the_console_is_served_with_a_strict_policy(stack: Stack, http: httpx.Client) -> None:
    page = http.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # The console's own paths answer the page; its router shows the task.
    assert http.get(f"/ui/tasks/{SAMPLE}").text == page.text
    assert http.get("/ui").headers["location"].endswith("/ui/")
    assert http.get("/ui/assets/style.css").headers["content-type"] == "text/css; charset=utf-8"
    assert http.get("/ui/assets/nothing.js").headers["content-type"] == "text/html; charset=utf-8"
    assert http.post("/ui/").status_code == 405
