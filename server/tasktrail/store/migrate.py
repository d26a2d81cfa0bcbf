"""Schema migrations with Alembic: applied once, under a lock, by `tasktrail
migrate` (each backend takes its own lock: `sqlite.migrate`, `postgres.migrate`).

A server checks the schema's revision when it starts and refuses to run on a
schema older than its code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaOutdated(RuntimeError):
    """The store's schema is not the one this code needs: `tasktrail migrate` first."""


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Bring the schema on `connection` to the code's revision."""
    command.upgrade(_config(connection), "head")


def check_revision(current: str | None) -> None:
    """Refuse a schema at another revision than the code's."""
    head = head_revision()
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at revision {current or 'none'} and this code needs {head}: "
            "run `tasktrail migrate` first"
        )
