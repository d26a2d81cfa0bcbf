"""Every error case of the pgEdge task API answers with its documented status
and body, and no request of any shape gets a 5xx or a non-JSON body."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasktrail.edge import sample
from tasktrail.v1 import task_pb2, writer_service_pb2
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SORT_CHOICES = '"asc", "ascend", "ascending", "desc", "descend", "descending"'
INVALID_ID = (
    "valid IDs must be 1-36 characters long, contain only lowercase letters, digits, and hyphens, "
    "start and end with a letter or digit, and not contain two consecutive hyphens"
)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.rest, timeout=10) as client:
        yield client


def designed(reply: httpx.Response, status: int, name: str, message: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["goa-error"] == name
    assert reply.json() == {"name": name, "message": message}


def framework(reply: httpx.Response, name: str, message: str) -> None:
    assert reply.status_code == 400, reply.text
    assert reply.headers["goa-error"] == name
    body = reply.json()
    assert list(body) == ["name", "id", "message", "temporary", "timeout", "fault"]
    assert len(body["id"]) == 8
    assert {k: v for k, v in body.items() if k != "id"} == {
        "name": name,
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": False,
    }


def test_non_uuid_task_id(http: httpx.Client) -> None:
    framework(
        http.get("/v1/databases/example/tasks/abc"),
        "invalid_format",
        'task_id must be formatted as a uuid but got value "abc", uuid: abc: invalid UUID length: 3',
    )
    framework(
        http.get("/v1/hosts/host-1/tasks/not-a-uuid-but-36-characters-long-xx/logs"),
        "invalid_format",
        'task_id must be formatted as a uuid but got value "not-a-uuid-but-36-characters-long-xx", '
        "uuid: not-a-uuid-but-36-characters-long-xx: invalid UUID format",
    )


def test_nil_uuid_is_not_rfc4122(http: httpx.Client) -> None:
    nil = "00000000-0000-0000-0000-000000000000"
    framework(
        http.get(f"/v1/databases/example/tasks/{nil}"),
        "invalid_format",
        f'task_id must be formatted as a uuid but got value "{nil}", uuid: expected RFC4122 format, but got Reserved',
    )


def test_bad_cursor_and_entry_ids(http: httpx.Client) -> None:
    framework(
        http.get("/v1/databases/example/tasks", params={"after_task_id": "x"}),
        "invalid_format",
        'after_task_id must be formatted as a uuid but got value "x", uuid: x: invalid UUID length: 1',
    )
    framework(
        http.get(f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}/log", params={"after_entry_id": "zz"}),
        "invalid_format",
        'after_entry_id must be formatted as a uuid but got value "zz", uuid: zz: invalid UUID length: 2',
    )


def test_non_integer_limit(http: httpx.Client) -> None:
    for value in ("abc", "1.5", "99999999999999999999", " 5"):
        framework(
            http.get("/v1/databases/example/tasks", params={"limit": value}),
            "invalid_field_type",
            f'invalid value "{value}" for "limit", must be a integer',
        )
    framework(
        http.get(f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}/log", params={"limit": "ten"}),
        "invalid_field_type",
        'invalid value "ten" for "limit", must be a integer',
    )


def test_unknown_sort_order_and_scope(http: httpx.Client) -> None:
    framework(
        http.get("/v1/databases/example/tasks", params={"sort_order": "up"}),
        "invalid_enum_value",
        f'value of sort_order must be one of {SORT_CHOICES} but got value "up"',
    )
    framework(
        http.get("/v1/tasks", params={"scope": "account"}),
        "invalid_enum_value",
        'value of scope must be one of "database", "host" but got value "account"',
    )


def test_bytes_that_are_not_utf8(http: httpx.Client) -> None:
    """Envoy hands percent-decoded bytes to the server as they are: U+FFFD
    stands for those that are not UTF-8, and the usual checks answer."""
    task = f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}"
    for url, name in [
        ("/v1/databases/example/tasks?after_task_id=%FF", "invalid_format"),
        ("/v1/databases/example/tasks?sort_order=%FF", "invalid_enum_value"),
        ("/v1/databases/example/tasks?limit=%FF", "invalid_field_type"),
        ("/v1/databases/example/tasks/%FF", "invalid_format"),
        (f"{task}/log?after_entry_id=%C3%28", "invalid_format"),
        (f"{task}/log/stream?after_entry_id=%FF", "invalid_format"),
        ("/v1/tasks?scope=%FF", "invalid_enum_value"),
    ]:
        reply = http.get(url)
        assert reply.status_code == 400, (url, reply.text)
        assert reply.headers["goa-error"] == name, (url, reply.text)
        assert "\ufffd" in reply.json()["message"], reply.text
    for url, name in [
        ("/v1/databases/%FF/tasks", "database_id"),
        ("/v1/hosts/a%FFb/tasks", "host_id"),
        ("/v1/tasks?scope=host&entity_id=%FF", "entity_id"),
    ]:
        designed(http.get(url), 400, "invalid_input", f"{name}: {INVALID_ID}")


def test_over_long_ids(http: httpx.Client) -> None:
    long_id = "a" * 40
    framework(
        http.get(f"/v1/databases/{long_id}/tasks"),
        "invalid_length",
        f'length of database_id must be lesser or equal than 36 but got value "{long_id}" (len=40)',
    )
    framework(
        http.get("/v1/tasks", params={"scope": "host", "entity_id": long_id}),
        "invalid_length",
        f'length of entity_id must be lesser or equal than 36 but got value "{long_id}" (len=40)',
    )


def test_errors_merge_as_goa_merges_them(http: httpx.Client) -> None:
    framework(
        http.get("/v1/databases/example/tasks", params={"limit": "x", "sort_order": "y"}),
        "invalid_field_type",
        f'invalid value "x" for "limit", must be a integer; value of sort_order must be one of {SORT_CHOICES} '
        'but got value "y"',
    )


def test_invalid_identifier_is_a_400_not_a_500(http: httpx.Client) -> None:
    for path in ("/v1/databases/Bad_DB/tasks", f"/v1/databases/a--b/tasks/{sample.DOC_TASK_ID}"):
        designed(http.get(path), 400, "invalid_input", f"database_id: {INVALID_ID}")
    designed(http.get("/v1/hosts/-h/tasks"), 400, "invalid_input", f"host_id: {INVALID_ID}")
    designed(
        http.get("/v1/tasks", params={"scope": "host", "entity_id": "Nope"}),
        400,
        "invalid_input",
        f"entity_id: {INVALID_ID}",
    )


def test_unknown_task(http: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    for path in (
        f"/v1/databases/example/tasks/{missing}",
        f"/v1/databases/example/tasks/{missing}/log",
        f"/v1/hosts/host-1/tasks/{missing}",
        f"/v1/hosts/host-1/tasks/{missing}/logs",
        # The documented task, under another database or as a host task.
        f"/v1/databases/other/tasks/{sample.DOC_TASK_ID}",
        f"/v1/hosts/host-1/tasks/{sample.DOC_TASK_ID}",
    ):
        designed(http.get(path), 404, "not_found", "no task found with the given ID")


def test_unknown_entity_lists_nothing(http: httpx.Client) -> None:
    reply = http.get("/v1/databases/nothing-here/tasks")
    assert (reply.status_code, reply.json()) == (200, {"tasks": []})
    reply = http.get("/v1/tasks", params={"scope": "host", "entity_id": "nothing-here"})
    assert (reply.status_code, reply.json()) == (200, {"tasks": []})


def test_entity_id_requires_scope(http: httpx.Client) -> None:
    designed(
        http.get("/v1/tasks", params={"entity_id": "example"}),
        400,
        "invalid_input",
        "entity_id requires scope to be set",
    )


def test_cursor_that_names_no_task(http: httpx.Client) -> None:
    v4 = str(uuid.uuid4())
    designed(
        http.get("/v1/databases/example/tasks", params={"after_task_id": v4}),
        400,
        "invalid_input",
        f'invalid after task ID "{v4}": not a known task and not a time-based UUID',
    )


def test_unknown_query_parameters_and_empty_values(http: httpx.Client) -> None:
    plain = http.get("/v1/databases/example/tasks").json()
    odd = http.get(
        "/v1/databases/example/tasks", params={"bogus": "1", "limit": "", "sort_order": "", "after_task_id": ""}
    )
    assert (odd.status_code, odd.json()) == (200, plain)


def test_a_request_is_rest_whatever_content_type_it_claims(http: httpx.Client) -> None:
    plain = http.get("/v1/databases/example/tasks").json()
    for content_type in ("application/grpc", "application/grpc+proto", "text/plain", "application/xml"):
        headers = {"content-type": content_type}
        reply = http.get("/v1/databases/example/tasks", headers=headers)
        assert (reply.status_code, reply.headers["content-type"], reply.json()) == (200, "application/json", plain)
        # Envoy's own refusals of such a request are REST refusals too.
        refused = http.post(f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}/cancel", content=b"xx", headers=headers)
        assert (refused.status_code, refused.headers["goa-error"]) == (400, "bad_request"), refused.text
        assert refused.json()["message"] == "Unexpected token.\nxx\n^"
        designed(
            http.post("/tasktrail.controlplane.v1.ControlPlaneTaskService/ListDatabaseTasks", headers=headers),
            404,
            "not_found",
            "no endpoint for POST /tasktrail.controlplane.v1.ControlPlaneTaskService/ListDatabaseTasks",
        )


def new_task(stack: Stack, status: task_pb2.TaskStatus.ValueType | None = None, commit: bool = False) -> str:
    task = stack.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="cancels", type="update"),
        timeout=10,
    ).task
    if status is not None or commit:
        update = writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=task_pb2.TASK_STATUS_RUNNING)
        stack.writer.UpdateTask(update, timeout=10)
    if commit:
        stack.writer.UpdateTask(
            writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, in_commit_phase=True), timeout=10
        )
    if status is not None and status != task_pb2.TASK_STATUS_RUNNING:
        update = writer_service_pb2.UpdateTaskRequest(task_id=task.task_id, status=status)
        if status == task_pb2.TASK_STATUS_FAILED:
            update.error.message = "boom"
        stack.writer.UpdateTask(update, timeout=10)
    return str(task.task_id)


def test_cancel(stack: Stack, http: httpx.Client) -> None:
    pending = new_task(stack)
    reply = http.get(f"/v1/databases/cancels/tasks/{pending}/cancel")
    assert reply.status_code == 200
    body = reply.json()
    assert (body["status"], "completed_at" in body) == ("canceling", False)
    # Nobody held it: the server finished the cancel.
    after = http.get(f"/v1/databases/cancels/tasks/{pending}").json()
    assert after["status"] == "canceled"
    assert "completed_at" in after
    assert "error" not in after
    log = http.get(f"/v1/databases/cancels/tasks/{pending}/log").json()
    assert [(e["message"], e["fields"]) for e in log["entries"]] == [
        ("task is canceling", {"status": "canceling"}),
        ("task successfully canceled", {"status": "canceled"}),
    ]

    running = new_task(stack, task_pb2.TASK_STATUS_RUNNING)
    reply = http.post(f"/v1/databases/cancels/tasks/{running}/cancel")  # POST works as well as GET
    assert (reply.status_code, reply.json()["status"]) == (200, "canceling")
    # A second cancel of a canceling task: refused, as the original refuses it.
    designed(
        http.get(f"/v1/databases/cancels/tasks/{running}/cancel"),
        400,
        "invalid_input",
        "task must be running or pending to be cancelled",
    )


def test_cancel_refusals(stack: Stack, http: httpx.Client) -> None:
    for status in (task_pb2.TASK_STATUS_COMPLETED, task_pb2.TASK_STATUS_FAILED):
        done = new_task(stack, status)
        designed(
            http.get(f"/v1/databases/cancels/tasks/{done}/cancel"),
            400,
            "invalid_input",
            "task must be running or pending to be cancelled",
        )
    committing = new_task(stack, commit=True)
    designed(
        http.get(f"/v1/databases/cancels/tasks/{committing}/cancel"),
        400,
        "invalid_input",
        "task is in its commit phase and cannot be cancelled",
    )
    designed(
        http.get(f"/v1/databases/cancels/tasks/{uuid.uuid4()}/cancel"),
        404,
        "not_found",
        "no task found with the given ID",
    )
    designed(
        http.get("/v1/databases/cancels/tasks/abc/cancel"),
        400,
        "invalid_input",
        "invalid task ID: invalid UUID length: 3",
    )
    framework(
        http.get(f"/v1/databases/cancels/tasks/{'x' * 37}/cancel"),
        "invalid_length",
        f'length of task_id must be lesser or equal than 36 but got value "{"x" * 37}" (len=37)',
    )
    # The documented task belongs to database "example", not "cancels".
    designed(
        http.get(f"/v1/databases/cancels/tasks/{sample.DOC_TASK_ID}/cancel"),
        404,
        "not_found",
        "no task found with the given ID",
    )


def test_unknown_paths_and_methods(http: httpx.Client) -> None:
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/nope"), ("GET", "/v1/databases/example")):
        reply = http.request(method, path)
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.headers["goa-error"] == "not_found"
        assert reply.json()["name"] == "not_found"
    # A path the API has, with a method it does not take: 405, naming the ones it does.
    for method, path, allowed in (
        ("DELETE", f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}", "GET"),
        ("PUT", "/v1/databases/example/tasks", "GET"),
        ("POST", "/", "GET"),
        ("DELETE", f"/v1/databases/example/tasks/{sample.DOC_TASK_ID}/cancel", "GET, POST"),
    ):
        reply = http.request(method, path)
        assert (reply.status_code, reply.headers["allow"]) == (405, allowed), (method, path, reply.text)
        assert reply.headers["goa-error"] == "method_not_allowed"
        assert reply.json()["name"] == "method_not_allowed"
    # An empty id is an invalid id.
    designed(http.get("/v1/databases//tasks"), 400, "invalid_input", f"database_id: {INVALID_ID}")
    # A trailing slash names the same endpoint.
    assert http.get("/v1/databases/example/tasks/").json() == http.get("/v1/databases/example/tasks").json()


def test_bad_body_on_post_cancel(stack: Stack, http: httpx.Client) -> None:
    task = new_task(stack)
    reply = http.post(f"/v1/databases/cancels/tasks/{task}/cancel", content=b"{not json")
    assert reply.status_code == 400
    assert reply.json()["name"] == "bad_request"


SEGMENT = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=50).map(
        lambda s: urllib.parse.quote(s, safe="")
    ),
    st.binary(max_size=20).map(lambda b: urllib.parse.quote_from_bytes(b, safe="")),  # not always UTF-8
    st.sampled_from(["%00", "a%00b"]),  # valid UTF-8 that PostgreSQL's text cannot hold
)
PATHS = st.sampled_from(
    [
        "/v1/databases/{a}/tasks",
        "/v1/databases/{a}/tasks/{b}",
        "/v1/databases/{a}/tasks/{b}/log",
        "/v1/databases/{a}/tasks/{b}/cancel",
        "/v1/hosts/{a}/tasks",
        "/v1/hosts/{a}/tasks/{b}",
        "/v1/hosts/{a}/tasks/{b}/logs",
        "/v1/tasks",
        "/v1/{a}",
        "/{a}/{b}",
    ]
)
PARAMS = st.dictionaries(
    st.sampled_from(["limit", "after_task_id", "after_entry_id", "sort_order", "scope", "entity_id", "x"]),
    st.one_of(
        st.text(max_size=40),
        st.binary(max_size=20),
        st.sampled_from(["-1", "0", "5", "asc", "host", sample.DOC_TASK_ID, "\x00"]),
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, a=SEGMENT, b=SEGMENT, params=PARAMS, method=st.sampled_from(["GET", "GET", "POST", "PATCH"]))
def test_no_request_gets_a_5xx_or_a_non_json_body(
    http: httpx.Client, path: str, a: str, b: str, params: dict[str, str | bytes], method: str
) -> None:
    query = urllib.parse.urlencode(params)
    # Absolute: a relative URL may not start with "//".
    url = str(http.base_url).rstrip("/") + path.format(a=a, b=b) + (f"?{query}" if query else "")
    reply = http.request(method, url)
    assert reply.status_code < 500, (url, reply.text)
    assert reply.headers["content-type"].startswith("application/json"), (url, reply.headers)
    body: Any = json.loads(reply.content)
    assert isinstance(body, dict)
    if reply.status_code >= 400:
        assert body["name"], body
