"""Every list and log read is an index range in the order it answers: no table
scan, no sort, whatever the store's size."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.sql import Select

from tasktrail.store import tasks as q
from tasktrail.store.engine import _SQLITE_NAMED


def plan(db: Path, stmt: Select[object]) -> str:
    compiled = stmt.compile(dialect=_SQLITE_NAMED)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + str(compiled), dict.fromkeys(compiled.params, 1)).fetchall()
    return " | ".join(r[3] for r in rows)


@pytest.mark.parametrize(
    ("with_entity", "statuses", "types", "descending", "with_after"),
    list(itertools.product([True, False], [0, 2], [0, 1], [True, False], [True, False])),
)
def test_list_pages_are_index_ranges(
    database_url: str, with_entity: bool, statuses: int, types: int, descending: bool, with_after: bool
) -> None:
    text = plan(
        Path(database_url.removeprefix("sqlite:///")),
        q._list_statement(with_entity, statuses, types, descending, with_after),
    )
    index = "ix_tasks_entity_order" if with_entity else "ix_tasks_scope_order"
    assert text.startswith(f"SEARCH tasks USING INDEX {index}"), text
    assert "TEMP B-TREE" not in text
    if with_after:
        assert "(created_at,task_id)" in text


@pytest.mark.parametrize("stmt", [q._LOG_FORWARD, q._LOG_FORWARD_FROM, q._LOG_TAIL, q._LOG_TAIL_FROM, q._GET_TASK])
def test_point_and_log_reads_use_keys(database_url: str, stmt: Select[object]) -> None:
    text = plan(Path(database_url.removeprefix("sqlite:///")), stmt)
    assert text.startswith("SEARCH"), text
    assert "TEMP B-TREE" not in text
