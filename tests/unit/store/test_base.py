"""What every backend shares: the bounded cache of compiled statements, and durability."""

from __future__ import annotations

import pytest
from sqlalchemy import column, select, table, text

from tasktrail.store import open_store
from tasktrail.store.base import Compiled, StoreOptions
from tasktrail.store.postgres import PostgresStore


def test_compiled_statements_are_bounded_and_reused() -> None:
    made: list[str] = []

    def compile_one(stmt: object) -> str:
        made.append(str(stmt))
        return str(stmt)

    compiled = Compiled(compile_one, size=3)
    things = table("things", column("a"))
    statements = [select(things.c.a).where(things.c.a == i) for i in range(10)]
    for stmt in statements:
        compiled(stmt)
    assert len(compiled) == 3  # not one a statement ever seen
    compiled(statements[-1])
    assert len(made) == 10  # the most recent one was kept: no compile again
    compiled(statements[0])
    assert len(made) == 11  # the oldest went


@pytest.mark.anyio
@pytest.mark.parametrize(("durability", "sqlite", "postgres"), [("full", 2, "on"), ("normal", 1, "off")])
async def test_durability_is_what_the_store_commits_with(
    database_url: str, durability: str, sqlite: int, postgres: str
) -> None:
    """`--durability full` waits for the disk at each commit (SQLite synchronous=FULL,
    PostgreSQL synchronous_commit=on); `normal` does not (NORMAL, off)."""
    store = open_store(database_url, StoreOptions(durability=durability))
    try:
        if isinstance(store, PostgresStore):
            setting = "SHOW synchronous_commit"
            want: object = postgres
        else:
            setting, want = "PRAGMA synchronous", sqlite
        assert await store.write(lambda tx: tx.rows(text(setting))[0][0]) == want
    finally:
        await store.close()
