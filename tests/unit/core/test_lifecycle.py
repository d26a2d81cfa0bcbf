"""Every (state, transition) pair: applied or refused with FAILED_PRECONDITION,
and terminal states never change. The expected tables are written out here,
not imported, so that a change to the state machine has to change this test.

Tasks in RUNNING and CANCELING are held by a worker (claimed, under a lease),
as a real workflow holds them; writes carry its lease."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from tasktrail.core import errors
from tasktrail.core.model import NewLogEntry, NewTask, Scope, Status, Task, TaskChanges, TaskError
from tasktrail.core.tasks import EVERYTHING, TaskCore
from tasktrail.store import open_store

pytestmark = pytest.mark.anyio

P, R, CI, C, F, X = (
    Status.PENDING,
    Status.RUNNING,
    Status.CANCELING,
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELED,
)

# UpdateTask(status=target) from each state.
ALLOWED_WRITES = {
    P: {P, R, F},
    R: {R, C, F},
    CI: {CI, X, C, F},
    C: set(),
    F: set(),
    X: set(),
}
TERMINAL = {C, F, X}
LEASE = 60_000_000


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[TaskCore]:
    store = open_store(database_url)
    yield TaskCore(store)
    await store.close()


async def task_in(core: TaskCore, state: Status, *, commit_phase: bool = False) -> tuple[Task, str | None]:
    """A task in `state`, and the lease its worker holds it with (None for a pending task)."""
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db1", type="update"))
    tid, lease = task.task_id, None
    if state in (R, CI, C, F):
        claim = await core.claim(tid, "worker-1", LEASE, None, EVERYTHING)
        task, lease = claim.task, claim.lease_id
    if commit_phase and state in (P, R):
        task = await core.update_task(tid, TaskChanges(in_commit_phase=True), lease)
    if state is CI:
        task = (await core.cancel(tid)).task
    elif state is C:
        task = await core.update_task(tid, TaskChanges(status=C), lease)
    elif state is F:
        task = await core.update_task(tid, TaskChanges(status=F, error=TaskError("internal_error", "boom")), lease)
    elif state is X:
        await core.cancel(tid)
        task = await core.get_task(tid)
    assert task.status is state
    return task, lease


@pytest.mark.parametrize(("state", "target"), list(itertools.product(list(Status), list(Status))))
async def test_every_writer_transition(core: TaskCore, state: Status, target: Status) -> None:
    task, lease = await task_in(core, state)
    error = TaskError("internal_error", "boom") if target is F else None
    if target in ALLOWED_WRITES[state]:
        updated = await core.update_task(task.task_id, TaskChanges(status=target, error=error), lease)
        assert updated.status is target
        assert (updated.completed_at is not None) == (target in TERMINAL)
        if target in TERMINAL:
            assert updated.lease_id is None  # the lease ends with the task
    elif state in TERMINAL and target is state:
        # The update that ended it, sent again (its answer was lost): the same answer, nothing changed.
        again = await core.update_task(task.task_id, TaskChanges(status=target, error=error), lease)
        assert (again.status, again.completed_at, again.version) == (task.status, task.completed_at, task.version)
    else:
        with pytest.raises(errors.FailedPrecondition):
            await core.update_task(task.task_id, TaskChanges(status=target, error=error), lease)
    after = await core.get_task(task.task_id, fresh=True)
    if state in TERMINAL:
        assert (after.status, after.completed_at, after.error) == (task.status, task.completed_at, task.error)


@pytest.mark.parametrize("state", list(Status))
async def test_every_claim(core: TaskCore, state: Status) -> None:
    task, _lease = await task_in(core, state)
    if state is P:
        claim = await core.claim(task.task_id, "w2", LEASE, None, EVERYTHING)
        assert (claim.task.status, claim.task.worker_name) == (R, "w2")
        again = await core.claim(task.task_id, "w2", LEASE, claim.lease_id, EVERYTHING)
        assert again.lease_id == claim.lease_id  # a retried claim is the same claim
    else:
        with pytest.raises(errors.FailedPrecondition) as refused:
            await core.claim(task.task_id, "w2", LEASE, None, EVERYTHING)
        expected = {R: errors.TASK_HELD, CI: errors.TASK_HELD}.get(state, errors.TASK_TERMINAL)
        assert refused.value.reason == expected


@pytest.mark.parametrize("state", list(Status))
@pytest.mark.parametrize("commit_phase", [False, True])
@pytest.mark.parametrize("force", [False, True])
async def test_every_cancel(core: TaskCore, state: Status, commit_phase: bool, force: bool) -> None:
    task, _lease = await task_in(core, state, commit_phase=commit_phase)
    if state is X:
        # Canceled already (a retried cancel whose answer was lost, say): the task as it is.
        result = await core.cancel(task.task_id, force=force)
        assert (result.task.status, result.requested, result.task.version) == (X, False, task.version)
    elif state in TERMINAL:
        with pytest.raises(errors.FailedPrecondition) as refused:
            await core.cancel(task.task_id, force=force)
        assert refused.value.reason == errors.TASK_TERMINAL
    elif state is CI:
        # Asked already: the task as it is; but a force after a plain cancel forces it (its worker hears).
        result = await core.cancel(task.task_id, force=force)
        assert (result.task.status, result.requested, result.task.cancel_forced) == (CI, force, force)
    elif commit_phase and not force:
        with pytest.raises(errors.FailedPrecondition) as refused:
            await core.cancel(task.task_id, force=force)
        assert refused.value.reason == errors.TASK_IN_COMMIT_PHASE
        assert (await core.get_task(task.task_id)).status is state
    else:
        result = await core.cancel(task.task_id, force=force)
        assert (result.task.status, result.requested, result.task.cancel_forced) == (CI, True, force)
        after = await core.get_task(task.task_id, fresh=True)
        # Nobody holds a pending task: the server finishes its cancel at once; a held one waits for its worker.
        assert after.status is (X if state is P else CI)
        log = await core.read_log(task.task_id)
        messages = [e.message for e in log.entries]
        assert messages[0] == "task is canceling"
        assert log.entries[0].fields == ({"status": "canceling", "forced": True} if force else {"status": "canceling"})
        if state is P:
            assert messages[1:] == ["task successfully canceled"]


@pytest.mark.parametrize("state", [C, F, X])
async def test_terminal_tasks_refuse_every_write(core: TaskCore, state: Status) -> None:
    task, lease = await task_in(core, state)
    changing = [TaskChanges(node_name="n9"), TaskChanges(in_commit_phase=True)]
    if state is F:
        changing.append(TaskChanges(status=F, error=TaskError("other", "another failure")))
    for changes in changing:
        with pytest.raises(errors.FailedPrecondition):
            await core.update_task(task.task_id, changes, lease)
    # The update that ended it, again: answered as it is, not refused (its answer may have been lost).
    again = TaskChanges(status=state, error=task.error if state is F else None)
    assert await core.update_task(task.task_id, again, lease) == task
    with pytest.raises(errors.FailedPrecondition) as sealed:
        await core.append_log(task.task_id, [NewLogEntry("late")], lease)
    assert sealed.value.reason == errors.LOG_SEALED
    assert await core.get_task(task.task_id, fresh=True) == task


async def test_held_tasks_take_writes_from_their_worker_only(core: TaskCore) -> None:
    task, lease = await task_in(core, R)
    for wrong in (None, "someone-else"):
        with pytest.raises(errors.FailedPrecondition) as refused:
            await core.update_task(task.task_id, TaskChanges(status=C), wrong)
        assert refused.value.reason == errors.LEASE_LOST
        with pytest.raises(errors.FailedPrecondition):
            await core.append_log(task.task_id, [NewLogEntry("not mine")], wrong)
    assert (await core.update_task(task.task_id, TaskChanges(status=C), lease)).status is C


async def test_failed_needs_an_error(core: TaskCore) -> None:
    task, lease = await task_in(core, R)
    with pytest.raises(errors.InvalidArgument):
        await core.update_task(task.task_id, TaskChanges(status=F), lease)
