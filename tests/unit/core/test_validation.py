"""Every bound a caller meets, at its limit and one past it: refused as
INVALID_ARGUMENT before the store is touched, on every store alike."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tasktrail.core import errors
from tasktrail.core.model import (
    ErrorDetail,
    NewLogEntry,
    NewTask,
    Progress,
    Result,
    Scope,
    Status,
    TargetProgress,
    TaskChanges,
    TaskError,
    TaskQuery,
)
from tasktrail.core.validation import (
    BOUNDS,
    Limits,
    check_append,
    check_changes,
    check_entry,
    check_new_task,
    check_query,
)

NEW = NewTask(Scope.CRDB, "guid", "create_crdb")


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("field", "limit"),
    [("type", BOUNDS.type), ("entity_id", BOUNDS.entity_id), ("node_name", BOUNDS.name), ("instance_id", BOUNDS.name),
     ("host_id", BOUNDS.name), ("request_id", BOUNDS.request_id), ("parent_id", BOUNDS.task_id)],
)  # fmt: skip
def test_a_new_tasks_strings_fit_their_columns(field: str, limit: int) -> None:
    values: dict[str, Any] = {field: "a" * limit}
    check_new_task(dataclasses.replace(NEW, **values))
    values[field] += "a"
    with pytest.raises(errors.InvalidArgument, match=f"at most {limit}"):
        check_new_task(dataclasses.replace(NEW, **values))


@pytest.mark.parametrize(
    "changes",
    [
        TaskChanges(worker_name="w" * (BOUNDS.name + 1)),
        TaskChanges(status=Status.FAILED, error=TaskError("c" * (BOUNDS.error_code + 1), "m")),
        TaskChanges(status=Status.FAILED, error=TaskError("c", "m" * (BOUNDS.error_message + 1))),
        TaskChanges(status=Status.FAILED, error=TaskError("c", "m", details=(ErrorDetail("t", "c", "m"),) * 65)),
        TaskChanges(progress=Progress(step="s" * (BOUNDS.progress_step + 1))),
        TaskChanges(progress=Progress(targets=(TargetProgress("n", "s"),) * (BOUNDS.progress_targets + 1))),
        TaskChanges(result=Result(resource_id="r" * (BOUNDS.result_id + 1))),
        TaskChanges(result=Result(resource={"big": "x" * BOUNDS.json_value})),
        TaskChanges(result=Result(resource=nested(BOUNDS.json_depth + 1))),
        TaskChanges(node_name="with\x00nul"),
    ],
)
def test_every_field_of_an_update_is_bounded(changes: TaskChanges) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_changes(changes)


def test_an_update_at_every_limit_passes() -> None:
    check_changes(
        TaskChanges(
            worker_name="w" * BOUNDS.name,
            status=Status.FAILED,
            error=TaskError("c" * BOUNDS.error_code, "m" * BOUNDS.error_message, 0, (ErrorDetail("t", "c", "m"),) * 64),
            progress=Progress(step="s" * BOUNDS.progress_step, targets=(TargetProgress("n", "s"),) * 64),
            result=Result(resource_id="r" * BOUNDS.result_id, resource=nested(BOUNDS.json_depth)),
        )
    )


def test_entries_are_bounded_in_size_and_depth() -> None:
    check_entry(NewLogEntry("m" * BOUNDS.message, fields=nested(BOUNDS.json_depth)))
    for entry in (
        NewLogEntry("m" * (BOUNDS.message + 1)),
        NewLogEntry("m", fields={"f": "x" * BOUNDS.json_value}),
        NewLogEntry("m", fields=nested(BOUNDS.json_depth + 1)),
        NewLogEntry("m", entry_id="not-a-uuid"),
    ):
        with pytest.raises(errors.InvalidArgument):
            check_entry(entry)
    with pytest.raises(errors.InvalidArgument, match="append_id is at most 64"):
        check_append([NewLogEntry("m")], "a" * 65, Limits())
    with pytest.raises(errors.InvalidArgument, match="at most 3 entries"):
        check_append([NewLogEntry("m")] * 4, None, Limits(max_append_batch=3))


@pytest.mark.parametrize(
    "entry_id",
    [
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "ffffffff-ffff-7fff-bfff-ffffffffffff",
        "ffffffff-ffff-0000-0000-000000000000",
    ],
)
def test_a_caller_entry_id_must_leave_room_after_it(entry_id: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="leaves no room"):
        check_entry(NewLogEntry("m", entry_id=entry_id))


def test_a_task_lists_filters_are_bounded() -> None:
    check_query(TaskQuery(ranges=(), statuses=tuple(Status), types=("t" * BOUNDS.type,) * BOUNDS.types))
    with pytest.raises(errors.InvalidArgument, match="types holds at most"):
        check_query(TaskQuery(ranges=(), types=("t",) * (BOUNDS.types + 1)))
    with pytest.raises(errors.InvalidArgument, match="statuses holds at most"):
        check_query(TaskQuery(ranges=(), statuses=(Status.PENDING,) * 20_000))
    with pytest.raises(errors.InvalidArgument, match="a type is at most"):
        check_query(TaskQuery(ranges=(), types=("t" * (BOUNDS.type + 1),)))
