"""Every list and log read is an index range in the order it answers: no table
scan, no sort, whatever the store's size: on SQLite (EXPLAIN QUERY PLAN) and
on PostgreSQL (EXPLAIN, with sequential scans priced out, as a large table
prices them)."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select

from tasktrail.store.sqlite import compile_statement
from tasktrail.store.statements import AFTERS, READS, list_statement
from tests.support import databases


def plan(db: Path, stmt: Select[object]) -> str:
    """The plan of the SQL the SQLite reader runs (the statement inside its JSON
    wrapper), without the wrapper's own scan of the statement's rows."""
    sql, _, _ = compile_statement(stmt)
    params = dict.fromkeys(re.findall(r":(\w+)", sql), 1)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(r[3] for r in rows if not re.fullmatch(r"(CO-ROUTINE|SCAN) anon_\d+", r[3]))


def pg_plan(url: str, stmt: Select[object]) -> str:
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
    sql = str(compiled)
    args = [_sample(name) for name in compiled.positiontup or ()]

    async def explain() -> str:
        conn = await asyncpg.connect(databases._dsn(url))
        try:
            # Statistics of a store with many entities, so that the planner prices as it will in use.
            await conn.execute(FILL)
            await conn.execute("ANALYZE tasks")
            await conn.execute("SET enable_seqscan = off")
            rows = await conn.fetch("EXPLAIN " + sql, *args)
        finally:
            await conn.close()
        return " | ".join(r[0].strip() for r in rows)

    return asyncio.run(explain())


FILL = """
INSERT INTO tasks (task_id, scope, entity_id, type, status, created_at, updated_at, status_changed_at,
                   in_commit_phase, cancel_forced, version)
SELECT 't' || i, (ARRAY['database', 'host', 'account', 'crdb'])[1 + i % 4], 'e' || (i % 8), 'create',
       'completed', i, i, i, false, false, 0
FROM generate_series(1, 40000) AS i
"""


SAMPLES: dict[str, object] = {
    "scope": "database",
    "entity_id": "e4",
    "after_created_at": 30_000,
    "after_task_id": "t30000",
    "now": 1,
    "since": 1,
    "limit": 100,
    "task_id": "t8",
    "after_entry_id": "x",
    "from_id": "x",
}


def _sample(name: str) -> object:
    # A value like the ones in use: the planner prices by them.
    if name.startswith("status_"):
        return "completed"
    if name.startswith("type_"):
        return "create"
    return SAMPLES[name]


@pytest.mark.only("postgres")
@pytest.mark.parametrize(
    ("with_entity", "statuses", "types", "descending", "after"),
    list(itertools.product([True, False], [0, 2], [0, 1], [True, False], AFTERS)),
)
def test_list_pages_are_index_ranges_on_postgres(
    database_url: str, with_entity: bool, statuses: int, types: int, descending: bool, after: str
) -> None:
    text = pg_plan(database_url, list_statement(with_entity, statuses, types, descending, after))
    index = "ix_tasks_entity_order" if with_entity else "ix_tasks_scope_order"
    assert f"Index Scan{' Backward' if descending else ''} using {index}" in text, text
    assert "Sort" not in text, text
    if after == "task":  # the cursor's position, by its primary key
        assert "Index Scan using tasks_pkey on tasks cursor_task" in text, text


@pytest.mark.only("postgres")
@pytest.mark.parametrize(
    "stmt", [READS[n] for n in ("log_forward", "log_forward_from", "log_tail", "log_tail_from", "get_task")]
)
def test_point_and_log_reads_use_keys_on_postgres(database_url: str, stmt: Select[object]) -> None:
    text = pg_plan(database_url, stmt)
    assert "Index" in text, text
    assert "Sort" not in text, text


@pytest.mark.only("sqlite")
@pytest.mark.parametrize(
    ("with_entity", "statuses", "types", "descending", "after"),
    list(itertools.product([True, False], [0, 2], [0, 1], [True, False], AFTERS)),
)
def test_list_pages_are_index_ranges(
    database_url: str, with_entity: bool, statuses: int, types: int, descending: bool, after: str
) -> None:
    text = plan(
        Path(database_url.removeprefix("sqlite:///")),
        list_statement(with_entity, statuses, types, descending, after),
    )
    index = "ix_tasks_entity_order" if with_entity else "ix_tasks_scope_order"
    assert text.startswith(f"SEARCH tasks USING INDEX {index}"), text
    assert "TEMP B-TREE" not in text
    if after:
        assert "(created_at,task_id)" in text
    if after == "task":  # the cursor's position, by its primary key
        assert "SEARCH cursor_task USING INDEX sqlite_autoindex_tasks_1 (task_id=?)" in text, text


@pytest.mark.only("sqlite")
@pytest.mark.parametrize(
    "stmt", [READS[n] for n in ("log_forward", "log_forward_from", "log_tail", "log_tail_from", "get_task")]
)
def test_point_and_log_reads_use_keys(database_url: str, stmt: Select[object]) -> None:
    text = plan(Path(database_url.removeprefix("sqlite:///")), stmt)
    assert text.startswith("SEARCH"), text
    assert "TEMP B-TREE" not in text
