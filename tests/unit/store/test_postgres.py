"""The PostgreSQL backend: its statements, compiled (no server needed: the hot
ones are shapes compiled once, and a parameter left out is an error), and
its pools when every connection is in use."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, text

from tasktrail.core import errors
from tasktrail.store import identity, open_store, postgres, ratelimit, statements
from tasktrail.store.base import Compiled
from tasktrail.store.postgres import compile_statement, no_values
from tasktrail.store.schema import users

SHAPES: list[Any] = [
    ratelimit._UPSERTS["postgresql"],
    ratelimit._FORGET,
    statements._INSERT_TASK,
    statements._update_statement(("status", "updated_at", "version")),
    statements._LOCK_TASK,
    statements._BY_REQUEST_ID,
    statements._STILL_EXPIRED,
    statements._DELETE_ENTRIES,
    statements._DELETE_TASKS,
    identity._TOKENS,
    identity._KEYS_OF,
    identity._USERS,
    identity._ACCOUNT_COUNT,
]


@pytest.mark.parametrize("stmt", SHAPES)
def test_every_statement_a_write_makes_often_is_a_shape_kept_once(stmt: Any) -> None:
    assert no_values(compile_statement(stmt))
    kept = Compiled(compile_statement, keep=no_values)
    assert kept(stmt) is kept(stmt)
    assert len(kept) == 1


def test_a_statement_with_values_of_its_own_is_compiled_per_call_and_not_kept() -> None:
    kept = Compiled(compile_statement, keep=no_values)
    stmt = insert(users).values(username="ada", password_hash="secret", created_at=1)
    _, names, values = kept(stmt)  # type: ignore[arg-type]
    assert [values[n] for n in names] == ["ada", "secret", 1]
    assert len(kept) == 0  # nothing of it (a password hash, say) stays in memory


def test_a_parameter_left_out_is_an_error_not_a_null() -> None:
    _, names, values = compile_statement(statements._LOCK_TASK)
    assert names == ("task_id",)
    with pytest.raises(KeyError):
        values["task_id"]


@pytest.mark.only("postgres")
@pytest.mark.anyio
async def test_a_call_that_finds_every_connection_in_use_is_told_the_store_is_busy(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Busy is not gone: UNAVAILABLE with its own words, counted as STORE_BUSY,
    and the calls that held the connections finish."""
    monkeypatch.setitem(postgres.POOL_SIZES, "write", 2)
    monkeypatch.setattr(postgres, "ACQUIRE_TIMEOUT", 0.3)
    store = open_store(database_url)
    try:
        slow = [asyncio.create_task(store.write(lambda tx: tx.rows(text("SELECT pg_sleep(1)")))) for _ in range(2)]
        await asyncio.sleep(0.5)  # both connections made and in use
        busy_before = metrics_value("STORE_BUSY")
        with pytest.raises(errors.Unavailable, match="busy"):
            await store.write(lambda tx: tx.rows(text("SELECT 1")))
        assert metrics_value("STORE_BUSY") == busy_before + 1
        await asyncio.gather(*slow)
        assert await store.write(lambda tx: tx.rows(text("SELECT 1"))) == [(1,)]
    finally:
        await store.close()


def metrics_value(reason: str) -> float:
    return REGISTRY.get_sample_value("tasktrail_store_failures_total", {"reason": reason}) or 0.0
