"""Alembic migrations of the tasktrail schema (applied by `tasktrail migrate`)."""
