"""What every backend shares: the bounded cache of compiled statements."""

from __future__ import annotations

from sqlalchemy import column, select, table

from tasktrail.store.base import Compiled


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
