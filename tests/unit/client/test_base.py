"""The SDK's shared pieces: statuses by name."""

from __future__ import annotations

from tasktrail.client import TaskStatus
from tasktrail.v1 import task_pb2


def test_a_status_prints_as_its_word_and_compares_as_its_number() -> None:
    status = TaskStatus(task_pb2.TASK_STATUS_COMPLETED)
    assert str(status) == "completed"
    assert f"{status}" == "completed"
    assert int(status) == task_pb2.TASK_STATUS_COMPLETED
    assert status.terminal
    assert not TaskStatus.RUNNING.terminal
    assert [str(s) for s in TaskStatus][1:] == ["pending", "running", "canceling", "completed", "failed", "canceled"]
