"""The lifecycle state machine: which status changes a writer may make.

PENDING -> RUNNING -> COMPLETED | FAILED, and PENDING | RUNNING -> CANCELING
-> CANCELED. Terminal states are final. A cancel is requested through
CancelTask, never by writing CANCELING.
"""

from __future__ import annotations

from tasktrail.core import errors
from tasktrail.core.model import Status, Task

# Transitions a writer may ask for with UpdateTask. Staying in a non-terminal
# state is allowed (a retried "running" changes nothing). A pending task may
# fail before it starts, and a canceling task may still end in its own way:
# a cancel is a request, not a guarantee.
WRITER_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PENDING, Status.RUNNING, Status.FAILED}),
    Status.RUNNING: frozenset({Status.RUNNING, Status.COMPLETED, Status.FAILED}),
    Status.CANCELING: frozenset({Status.CANCELING, Status.CANCELED, Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}

CANCELABLE = frozenset({Status.PENDING, Status.RUNNING})


def check_writable(task: Task) -> None:
    """Refuse any write to a terminal task."""
    if task.status.terminal:
        raise errors.FailedPrecondition(
            f"task {task.task_id} is {task.status.value}: a terminal task does not change",
            reason=errors.TASK_TERMINAL,
        )


def check_transition(task: Task, target: Status) -> None:
    check_writable(task)
    if target not in WRITER_TRANSITIONS[task.status]:
        raise errors.FailedPrecondition(
            f"task {task.task_id} cannot go from {task.status.value} to {target.value}",
            reason=errors.ILLEGAL_TRANSITION,
        )


def check_cancel(task: Task, *, force: bool) -> None:
    """May this task be canceled now? CANCELING is handled by the caller (no change)."""
    if task.status.terminal:
        raise errors.FailedPrecondition("task must be running or pending to be cancelled", reason=errors.TASK_TERMINAL)
    if task.in_commit_phase and not force:
        raise errors.FailedPrecondition(
            "task is in its commit phase: only a forced cancel can stop it", reason=errors.TASK_IN_COMMIT_PHASE
        )
