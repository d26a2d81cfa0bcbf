"""Fixtures: a real store for core tests, and the real stack (`tasktrail up`:
server processes and Envoy) for end-to-end tests; on SQLite, or on PostgreSQL
when TASKTRAIL_TEST_DATABASE names one (tests/support/databases.py). Helpers
live in tests/support."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio.pytest_plugin
import pytest
from grpc import aio

from tasktrail.api import server
from tasktrail.api.server import ServerSettings
from tasktrail.auth import accounts
from tasktrail.store import Store, migrate, open_store
from tasktrail.store.statements import WriteQueries
from tests.support import databases
from tests.support.loop import filter_loop_errors
from tests.support.stack import Stack, start_stack, stop_stack


def pytest_report_header(config: pytest.Config) -> str:
    where = databases.TEST_DATABASE if databases.ON_POSTGRES else "SQLite (a file per store)"
    return f"tasktrail: database {where}, {databases.REPLICAS} replica(s) a stack"


def pytest_sessionstart(session: pytest.Session) -> None:
    # A run asked for PostgreSQL must run on it: an unreachable server fails it, never skips it.
    databases.check_server()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = "postgres" if databases.ON_POSTGRES else "sqlite"
    for item in items:
        only = item.get_closest_marker("only")
        if only is not None and here not in only.args:
            item.add_marker(pytest.mark.skip(reason=f"runs on {', '.join(only.args)} only"))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = databases.fresh_url(tmp_path)
    migrate(url)
    yield url
    databases.drop(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The store of `database_url`, open."""
    opened = open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def cloud_account(store: Store) -> tuple[str, str, str]:
    """A cloud account in the store, with one user key: (account id, x-api-key, x-api-secret-key)."""

    def make(tx: WriteQueries) -> tuple[str, str, str]:
        account_id, api_key = accounts.create_account(tx, "unit")
        return account_id, api_key, accounts.create_key(tx, account_id, "unit")[1]

    return await store.write(make)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"  # grpc.aio runs on asyncio


@pytest.fixture(scope="session", autouse=True)
def one_event_loop() -> Iterator[None]:
    """One event loop for every async test. anyio keeps its test runner, and so its
    loop, open while anyone holds it: this holds it for the session. grpc.aio's
    poller serves one process-wide queue and may still hand a completion of a
    finished test to that test's loop; had that loop closed, the next test would
    fail on "Event loop is closed". So every grpc.aio call in the tests runs on
    this loop (none under an asyncio.run of its own)."""
    with anyio.pytest_plugin.get_runner("asyncio", {}) as runner:
        runner.run_fixture(filter_loop_errors, {})
        yield


@pytest.fixture
async def channel(database_url: str) -> AsyncIterator[aio.Channel]:
    """A channel to a real in-process server on a fresh store, without tokens."""
    running = await server.start(ServerSettings(database_url=database_url, port=0, auth=False))
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as opened:
        yield opened
    await running.stop(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack with the sample data, shared by the end-to-end tests."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    stop_stack(running)
