"""Core operations on a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tasktrail.core import errors
from tasktrail.core import tasks as tasks_module
from tasktrail.core.model import (
    CONTROL_PLANE_SCOPES,
    Access,
    NewLogEntry,
    NewTask,
    Scope,
    Status,
    TaskChanges,
    TaskQuery,
    now_us,
)
from tasktrail.core.tasks import EVERYTHING, TaskCore, Timing
from tasktrail.core.validation import Limits, check_append
from tasktrail.store import open_store
from tests.support import databases

pytestmark = pytest.mark.anyio
CP = Access(scopes=frozenset(CONTROL_PLANE_SCOPES))


@pytest.fixture
async def core(database_url: str) -> AsyncIterator[TaskCore]:
    store = open_store(database_url)
    yield TaskCore(store, Limits(max_log_entries=3), Timing(lease_grace=0))
    await store.close()


async def test_lists_merge_scopes_in_one_order(core: TaskCore) -> None:
    made = []
    for i in range(6):
        scope = Scope.DATABASE if i % 2 else Scope.HOST
        made.append(await core.create_task(NewTask(scope=scope, entity_id=f"e{i % 3}", type="t")))
    await core.create_task(NewTask(scope=Scope.ACCOUNT, entity_id="acct", type="t"))
    page = await core.list_tasks(TaskQuery(ranges=CP.ranges(), limit=4))
    assert [t.task_id for t in page.tasks] == [t.task_id for t in reversed(made)][:4]
    assert page.has_more
    rest = await core.list_tasks(TaskQuery(ranges=CP.ranges(), limit=4, after=page.tasks[-1].position))
    assert [t.task_id for t in rest.tasks] == [t.task_id for t in reversed(made)][4:]
    assert not rest.has_more


async def test_read_log_forward_and_tail(core: TaskCore) -> None:
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    await core.update_task(task.task_id, TaskChanges(status=Status.RUNNING))
    ids = await core.append_log(task.task_id, [NewLogEntry(str(i)) for i in range(7)])
    first = await core.read_log(task.task_id)
    assert ([e.entry_id for e in first.entries], first.last_entry_id, first.has_more) == (ids[:3], ids[2], True)
    nxt = await core.read_log(task.task_id, after_entry_id=first.last_entry_id)
    assert [e.entry_id for e in nxt.entries] == ids[3:6]
    last = await core.read_log(task.task_id, after_entry_id=ids[5])
    assert ([e.entry_id for e in last.entries], last.last_entry_id, last.has_more) == ([ids[6]], ids[6], False)
    caught_up = await core.read_log(task.task_id, after_entry_id=ids[6])
    assert (caught_up.entries, caught_up.last_entry_id) == ([], ids[6])
    tail = await core.read_log(task.task_id, limit=2, tail=True)
    assert [e.entry_id for e in tail.entries] == ids[5:]
    tail_after = await core.read_log(task.task_id, after_entry_id=ids[1], limit=2, tail=True)
    assert [e.entry_id for e in tail_after.entries] == ids[5:]  # the newest, not the next: pgEdge's limit
    tail_caught_up = await core.read_log(task.task_id, after_entry_id=ids[6], limit=2, tail=True)
    assert (tail_caught_up.entries, tail_caught_up.last_entry_id) == ([], ids[6])


async def test_visibility(core: TaskCore) -> None:
    task = await core.create_task(NewTask(scope=Scope.ACCOUNT, entity_id="acct-1", type="t"))
    assert (await core.get_task(task.task_id)).task_id == task.task_id
    with pytest.raises(errors.NotFound):
        await core.get_task(task.task_id, CP)
    with pytest.raises(errors.NotFound):
        await core.get_task(task.task_id, Access.of((Scope.ACCOUNT, "acct-2")))
    assert (await core.get_task(task.task_id, Access.of((Scope.ACCOUNT, "acct-1")))).task_id == task.task_id
    with pytest.raises(errors.NotFound):
        await core.cancel(task.task_id, CP)
    assert (await core.get_task(task.task_id)).status is Status.PENDING


async def test_positions(core: TaskCore) -> None:
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    assert await core.position_of(task.task_id, CP) == task.position
    v1 = "404ecbe0-5cda-11f0-900b-a74a79e3bdba"
    at, _ = await core.position_of(v1, CP)
    assert 1_752_000_000_000_000 < at < 1_753_000_000_000_000
    with pytest.raises(errors.InvalidArgument):
        await core.position_of("9d1b1c3e-6a4f-4b8e-8f3a-2f1d5c6b7a80", CP)
    crdb = await core.create_task(NewTask(scope=Scope.CRDB, entity_id="g", type="t", task_id="my-task"))
    with pytest.raises(errors.InvalidArgument):  # not a task this face shows, and not a UUID
        await core.position_of(crdb.task_id, CP)


async def test_append_batch_is_atomic(core: TaskCore) -> None:
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    await core.update_task(task.task_id, TaskChanges(status=Status.RUNNING))
    with pytest.raises(errors.InvalidArgument):
        await core.append_log(
            task.task_id, [NewLogEntry("ok"), NewLogEntry("bad", entry_id="00000000-0000-4000-8000-000000000000")]
        )
    assert (await core.read_log(task.task_id)).entries == []


async def test_keeping_a_result_writes_only_to_lengthen_it(core: TaskCore, monkeypatch: pytest.MonkeyPatch) -> None:
    """X-Result-TTL on a GET: a task kept long enough already costs a read and no
    write (no write lock, no wake-up of its followers); a longer keep is written."""
    writes: list[str | None] = []
    write = core.store.write

    async def counted(fn: Any, changed: str | None = None) -> Any:
        writes.append(changed)
        return await write(fn, changed)

    monkeypatch.setattr(core.store, "write", counted)
    running = await core.create_task(NewTask(scope=Scope.CRDB, entity_id="guid", type="t"))  # kept 500 s
    ended = await core.create_task(NewTask(scope=Scope.CRDB, entity_id="guid", type="t"))
    await core.update_task(ended.task_id, TaskChanges(status=Status.RUNNING))
    ended = await core.update_task(ended.task_id, TaskChanges(status=Status.COMPLETED))
    assert ended.expire_at is not None
    writes.clear()

    for task in (running, ended):
        kept = await core.keep_result(task.task_id, EVERYTHING, 10_000_000)
        assert (kept.retention_us, kept.expire_at) == (task.retention_us, task.expire_at)
    assert writes == []

    longer = await core.keep_result(running.task_id, EVERYTHING, 900_000_000)
    assert longer.retention_us == 900_000_000
    before = now_us()
    longer = await core.keep_result(ended.task_id, EVERYTHING, 900_000_000)
    assert longer.expire_at is not None
    assert longer.expire_at >= before + 900_000_000
    assert writes == [running.task_id, ended.task_id]
    for task in (running, ended):
        await core.keep_result(task.task_id, EVERYTHING, 900_000_000)
    assert len(writes) == 2


async def test_a_poisoned_log_stops_no_housekeeping(core: TaskCore) -> None:
    """A task whose log was left with no room for another id (as a writer could
    before caller ids had to leave room: written here straight into the store)
    still ends when its lease lapses, and so do the tasks after it."""
    lapsed = []
    for i in range(3):
        task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id=f"db{i}", type="t"))
        await core.claim(task.task_id, "w", 600_000, None, EVERYTHING)  # outlasts the append on a busy machine
        lapsed.append(task.task_id)
    first = lapsed[0]

    def poison(tx: Any) -> None:
        task = tx.lock_task(first)
        tx.save_task(task, dataclasses.replace(task, last_entry_id="ffffffff-ffff-ffff-ffff-ffffffffffff"))

    await core.store.write(poison)
    with pytest.raises(errors.FailedPrecondition, match="no room"):
        await core.append_log(first, [NewLogEntry("one more")], lease_id=(await core.get_task(first)).lease_id)
    await asyncio.sleep(0.65)
    assert await core.expire_leases() == 3
    ended = [await core.get_task(t) for t in lapsed]
    assert [t.status for t in ended] == [Status.FAILED] * 3
    assert [t.error.code if t.error else "" for t in ended] == ["lease_expired"] * 3


async def test_a_cursor_names_only_a_task_the_caller_may_see(core: TaskCore) -> None:
    """position_of places a known task only for a caller who may see it: for
    anyone else it is an unknown id (placed by the time in it, as any other)."""
    mine = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="mine", type="t"))
    theirs = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="theirs", type="t"))
    only_mine = Access.of((Scope.DATABASE, "mine"))
    assert await core.position_of(mine.task_id, only_mine) == mine.position
    placed = await core.position_of(theirs.task_id, only_mine)
    assert placed == (theirs.created_at // 1000 * 1000, theirs.task_id)  # the UUID's own millisecond, not the row's µs


async def test_a_page_after_a_task_id_is_the_page_after_its_position(core: TaskCore) -> None:
    """list_after reads a cursor in the listed range with the page's own
    statement (one read, the list's end included), and places any other
    cursor as position_of does: the same pages either way, for a caller who
    may see every control-plane task and for one who may see one database,
    for an expired cursor, and for refusals."""
    mine = [await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t")) for _ in range(6)]
    elsewhere = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="other", type="t"))
    crdb = await core.create_task(NewTask(scope=Scope.CRDB, entity_id="g", type="t", task_id="my-task"))
    v1 = "404ecbe0-5cda-11f0-900b-a74a79e3bdba"
    expired = mine.pop(2)

    def expire(tx: Any) -> None:
        before = tx.lock_task(expired.task_id)
        tx.save_task(before, dataclasses.replace(before, expire_at=1))

    await core.store.write(expire)
    reads = 0
    read = core.store.read

    async def counted(fn: Any) -> Any:
        nonlocal reads
        reads += 1
        return await read(fn)

    core.store.read = counted  # type: ignore[method-assign]
    only_db = Access.of((Scope.DATABASE, "db"))
    for descending, cursor_access in itertools.product((True, False), (CP, only_db)):
        query = TaskQuery(ranges=only_db.ranges(), descending=descending, limit=2)
        for cursor in [*(t.task_id for t in mine), expired.task_id, elsewhere.task_id, v1]:
            at = await core.position_of(cursor, cursor_access)
            expected = await core.list_tasks(dataclasses.replace(query, after=at))
            reads = 0
            assert await core.list_after(query, cursor, cursor_access) == expected, (descending, cursor)
            in_range = cursor in [t.task_id for t in mine] or cursor == expired.task_id  # tasks follow it
            assert reads == (1 if in_range else 3), (descending, cursor)
        with pytest.raises(errors.InvalidArgument):
            await core.list_after(query, crdb.task_id, cursor_access)  # not a task this face shows, nor a UUID
        with pytest.raises(errors.InvalidArgument):
            await core.list_after(query, "db\x00", cursor_access)
    assert (await core.list_after(query, mine[-1].task_id, CP)).tasks == []  # the list's end, in one read


async def test_request_ids_belong_to_one_entity(core: TaskCore) -> None:
    """Two tenants may use one request id: neither finds nor learns of the other's task."""
    a = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="a", type="create", request_id="r-1"))
    b = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="b", type="delete", request_id="r-1"))
    assert a.task_id != b.task_id
    again = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="a", type="create", request_id="r-1"))
    assert again.task_id == a.task_id


async def test_overlong_and_nul_ids_are_unknown_tasks(core: TaskCore) -> None:
    for task_id in ("x" * 65, "a\x00b"):
        with pytest.raises(errors.NotFound):
            await core.get_task(task_id)
        with pytest.raises(errors.NotFound):
            await core.read_log(task_id)


async def test_a_log_page_is_cut_by_size_and_says_so(database_url: str) -> None:
    store = open_store(database_url)
    try:
        core = TaskCore(store, Limits(max_answer_text=100_000))
        task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
        await core.update_task(task.task_id, TaskChanges(status=Status.RUNNING))
        ids = await core.append_log(task.task_id, [NewLogEntry("x" * 40_000) for _ in range(5)])
        page = await core.read_log(task.task_id)
        assert ([e.entry_id for e in page.entries], page.has_more) == (ids[:2], True)
        rest = await core.read_log(task.task_id, after_entry_id=page.last_entry_id)
        assert [e.entry_id for e in rest.entries] == ids[2:4]
        tail = await core.read_log(task.task_id, limit=5, tail=True)
        assert [e.entry_id for e in tail.entries] == ids[3:]  # the newest, as many as fit
    finally:
        await store.close()


async def test_a_heartbeat_counts_from_when_it_arrived(database_url: str) -> None:
    """A heartbeat sent in time but written after the lease ran out (another
    writer held the lock meanwhile) keeps the lease: no spurious LEASE_LOST."""
    store = open_store(database_url)
    core = TaskCore(store, timing=Timing(lease_min=50_000))
    try:
        task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
        claim = await core.claim(task.task_id, "w", 300_000, None, EVERYTHING)
        assert claim.task.lease_expires_at is not None
        held = asyncio.Event()
        stall = asyncio.create_task(databases.hold_task_lock(database_url, task.task_id, 0.6, held))
        await held.wait()
        sent = now_us()
        renewed = await core.heartbeat(task.task_id, claim.lease_id, 2_000_000, EVERYTHING)
        assert now_us() > claim.task.lease_expires_at  # it was written after the old lease ended
        # The new lease runs from the heartbeat's arrival, not from its write.
        assert renewed.lease_expires_at is not None
        assert renewed.lease_expires_at - sent < 2_000_000 + 50_000
        await core.append_log(task.task_id, [NewLogEntry("still mine")], claim.lease_id)
        await stall
    finally:
        await store.close()


async def test_an_append_retried_lands_once_and_its_id_is_its_batch(core: TaskCore) -> None:
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    batch = [NewLogEntry("one"), NewLogEntry("two")]
    first = await core.append_log(task.task_id, batch, append_id="a-1")
    assert await core.append_log(task.task_id, batch, append_id="a-1") == first  # the same answer
    with pytest.raises(errors.AlreadyExists) as reused:
        await core.append_log(task.task_id, [*batch, NewLogEntry("three")], append_id="a-1")
    assert reused.value.reason == errors.APPEND_REUSED
    assert [e.message for e in (await core.read_log(task.task_id)).entries] == ["one", "two"]


async def test_fields_are_encoded_once_and_a_batch_digest_ignores_key_order(core: TaskCore) -> None:
    """The store keeps the append's own JSON (the caller's key order); the
    digest is of sorted keys, so a retry whose fields come in another order
    is the same batch, one whose values differ is not, and NaN (no JSON word)
    retries as well."""
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    fields = {"zone": "zürich", "attempt": 2, "nested": {"b": [1.5, None], "a": True}}
    first = await core.append_log(task.task_id, [NewLogEntry("one", fields=fields)], append_id="a-1")
    reordered = {"nested": {"a": True, "b": [1.5, None]}, "attempt": 2, "zone": "zürich"}
    assert await core.append_log(task.task_id, [NewLogEntry("one", fields=reordered)], append_id="a-1") == first
    with pytest.raises(errors.AlreadyExists):
        await core.append_log(task.task_id, [NewLogEntry("one", fields={**fields, "zone": "zurich"})], append_id="a-1")
    [entry] = (await core.read_log(task.task_id)).entries
    assert entry.fields == fields
    assert list(entry.fields or {}) == ["zone", "attempt", "nested"]  # as written, not sorted

    odd = [NewLogEntry("two", fields={"ratio": float("nan"), "city": "köln"})]
    second = await core.append_log(task.task_id, odd, append_id="a-2")
    assert await core.append_log(task.task_id, odd, append_id="a-2") == second
    assert len((await core.read_log(task.task_id)).entries) == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"a": 1, "b": "plain"},  # the text the append made is reused
        {"b": "plain", "a": 1},  # keys out of order
        {"city": "köln", "del": "\x7f", "ctl": "\x01\n"},  # characters escaped only by default
        {"deep": {"z": [1.25, None, True], "a": {}}},
        {"nan": float("nan")},
        None,
    ],
)
def test_a_batch_digest_is_the_one_every_version_made(fields: Any) -> None:
    """The digest stored with an append is compared with a retry's, perhaps by
    a process of another version (a rolling upgrade): it is the same bytes as
    the digest's first formula, whatever text the append encoded."""
    entries = [NewLogEntry("m", fields=fields, timestamp=5), NewLogEntry("n")]
    digest = hashlib.sha256()
    for entry in entries:
        text = json.dumps(entry.fields, sort_keys=True, separators=(",", ":"), default=str) if entry.fields else ""
        for part in (entry.message, text, str(entry.timestamp), entry.entry_id or ""):
            digest.update(part.encode())
            digest.update(b"\x00")
    encoded = check_append(entries, "a", Limits())
    assert tasks_module.batch_digest(entries, encoded) == digest.hexdigest()


async def test_the_reaper_waits_out_the_grace_past_a_lease(database_url: str) -> None:
    store = open_store(database_url)
    core = TaskCore(store, timing=Timing(lease_min=50_000, lease_grace=400_000))
    try:
        task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
        await core.claim(task.task_id, "w", 100_000, None, EVERYTHING)
        await asyncio.sleep(0.2)  # lapsed, but within the grace: a heartbeat may be on its way
        assert await core.expire_leases() == 0
        assert (await core.get_task(task.task_id)).status is Status.RUNNING
        await asyncio.sleep(0.4)
        assert await core.expire_leases() == 1
        assert (await core.get_task(task.task_id)).status is Status.FAILED
    finally:
        await store.close()


async def test_a_forced_cancel_after_a_plain_one_forces_it(core: TaskCore) -> None:
    """Before: the force was dropped (the task was canceling already), so a worker
    in its commit phase never heard it."""
    task = await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t"))
    await core.claim(task.task_id, "w", 60_000_000, None, EVERYTHING)
    plain = await core.cancel(task.task_id)
    assert (plain.task.status, plain.task.cancel_forced) == (Status.CANCELING, False)
    forced = await core.cancel(task.task_id, force=True)
    assert (forced.requested, forced.task.status, forced.task.cancel_forced) == (True, Status.CANCELING, True)
    assert (await core.get_task(task.task_id)).cancel_forced
    again = await core.cancel(task.task_id, force=True)
    assert (again.requested, again.task.cancel_forced) == (False, True)


async def test_a_sweep_deletes_more_expired_tasks_than_one_statement_names(core: TaskCore) -> None:
    """The sweep's statements name 100 ids each: 150 expired tasks, and their
    logs, go in one sweep; a task not expired stays."""
    made = [await core.create_task(NewTask(scope=Scope.DATABASE, entity_id="db", type="t")) for _ in range(151)]
    await core.append_log(made[0].task_id, [NewLogEntry("one")])
    kept = made.pop()

    def expire(tx: Any) -> None:
        for task in made:
            before = tx.lock_task(task.task_id)
            tx.save_task(before, dataclasses.replace(before, expire_at=1))

    await core.store.write(expire)
    assert await core.sweep() == 150
    assert await core.sweep() == 0
    assert (await core.get_task(kept.task_id)).task_id == kept.task_id
    with pytest.raises(errors.NotFound):
        await core.get_task(made[0].task_id)
