"""The enterprise dialect's rendering rules, and its password storage."""

from __future__ import annotations

from tasktrail.api.dialects.crdb import render, seconds, to_json
from tasktrail.core.model import ErrorDetail, Progress, Scope, Status, TargetProgress, Task, TaskError

GUID = "1d7741cc-1110-4e2f-bc6c-935292783d24"


def task(status: Status, **kw: object) -> Task:
    fields: dict[str, object] = {
        "task_id": "t-1", "scope": Scope.CRDB, "entity_id": GUID, "type": "create_crdb", "status": status,
        "created_at": 1_665_567_221_000_000, "updated_at": 1_665_567_221_000_000,
        "status_changed_at": 1_665_567_221_000_000,
    }  # fmt: skip
    return Task(**{**fields, **kw})  # type: ignore[arg-type]


def test_timestamps_are_whole_seconds() -> None:
    assert seconds(1_665_567_221_999_999) == "2022-10-12T09:33:41Z"


def test_the_short_form_holds_id_guid_status_errors() -> None:
    assert to_json(render(task(Status.PENDING), verbose=False)) == {
        "id": "t-1",
        "crdb_guid": GUID,
        "status": "queued",
        "errors": [],
    }
    assert to_json(render(task(Status.CANCELING), verbose=False))["status"] == "started"


def test_the_long_form() -> None:
    progress = Progress(percent=50, step="committing", targets=(TargetProgress("c1", "done"),))
    out = to_json(
        render(
            task(
                Status.COMPLETED,
                started_at=1_665_567_221_000_000,
                completed_at=1_665_567_235_000_000,
                worker_name="crdb_worker:1:0",
                progress=progress,
            ),
            verbose=True,
        )
    )
    assert out == {
        "id": "t-1",
        "crdb_guid": GUID,
        "status": "finished",
        "errors": [],
        "operation": "create_crdb",
        "progress": {"clusters": [{"name": "c1", "progress": "done"}], "worker": "committing"},
        "started": "2022-10-12T09:33:41Z",
        "ended": "2022-10-12T09:33:55Z",
        "worker_name": "crdb_worker:1:0",
    }
    # Not started yet: no times, an empty progress.
    queued = to_json(render(task(Status.PENDING), verbose=True))
    assert "started" not in queued
    assert queued["progress"] == {"clusters": [], "worker": ""}


def test_errors() -> None:
    failed = task(Status.FAILED, error=TaskError("internal_error", "Error [401]"))
    assert to_json(render(failed, False))["errors"] == [
        {"cluster_name": "", "description": "Error [401]", "error_code": "internal_error"}
    ]
    per_cluster = task(Status.FAILED, error=TaskError("x", "two", details=(ErrorDetail("c1", "", "down"),)))
    assert to_json(render(per_cluster, False))["errors"] == [
        {"cluster_name": "c1", "description": "down", "error_code": "internal_error"}
    ]
    canceled = to_json(render(task(Status.CANCELED, cancel_forced=True), False))
    assert canceled["status"] == "failed"
    assert canceled["errors"][0]["error_code"] == "canceled"
