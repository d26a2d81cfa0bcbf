"""What the core accepts: identifiers, task and entry checks, and every size
limit in one place."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tasktrail.core import errors
from tasktrail.core.ids import is_canonical_uuid
from tasktrail.core.model import NewLogEntry, NewTask, Scope

# Control-plane ids: lower-case letters, digits and single hyphens, 1-36 long.
IDENTIFIER = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,34}[a-z0-9])?")
MAX_FREE_ID = 64
MAX_REQUEST_ID = 128
MAX_MESSAGE = 64 * 1024
# google.protobuf.Timestamp's range (0001-01-01 to 9999-12-31 UTC), in µs.
MIN_TIMESTAMP_US = -62_135_596_800_000_000
MAX_TIMESTAMP_US = 253_402_300_799_999_999


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounded answers: no read returns more than these."""

    max_page_size: int = 1000
    default_page_size: int = 100
    max_log_entries: int = 1000
    max_append_batch: int = 1000
    # Terminal tasks kept in memory per process (they never change).
    finished_cache_size: int = 100_000


def valid_identifier(value: str) -> bool:
    return IDENTIFIER.fullmatch(value) is not None and "--" not in value


def check_new_task(new: NewTask) -> None:
    if not new.type:
        raise errors.InvalidArgument("type is required")
    if not new.entity_id:
        raise errors.InvalidArgument("entity_id is required")
    if new.scope in (Scope.DATABASE, Scope.HOST) and not valid_identifier(new.entity_id):
        raise errors.InvalidArgument(
            f"entity_id {new.entity_id!r}: valid IDs must be 1-36 characters long, contain only lowercase "
            "letters, digits, and hyphens, start and end with a letter or digit, and not contain two "
            "consecutive hyphens"
        )
    if new.task_id:
        if new.scope is Scope.CRDB:
            if len(new.task_id) > MAX_FREE_ID or not new.task_id.isprintable() or "/" in new.task_id:
                raise errors.InvalidArgument("a CRDB task id is up to 64 printable characters, without '/'")
        elif not is_canonical_uuid(new.task_id):
            raise errors.InvalidArgument(f"task_id {new.task_id!r} is not a canonical lower-case UUID")
    if new.parent_id and not is_canonical_uuid(new.parent_id) and new.scope is not Scope.CRDB:
        raise errors.InvalidArgument(f"parent_id {new.parent_id!r} is not a canonical lower-case UUID")
    if new.request_id is not None and len(new.request_id) > MAX_REQUEST_ID:
        raise errors.InvalidArgument(f"request_id is at most {MAX_REQUEST_ID} characters")
    if new.retention_us is not None and new.retention_us < 0:
        raise errors.InvalidArgument("result_ttl must not be negative")


def check_append(entries: Sequence[NewLogEntry], append_id: str | None, limits: Limits) -> None:
    if append_id is not None and len(append_id) > MAX_REQUEST_ID:
        raise errors.InvalidArgument(f"append_id is at most {MAX_REQUEST_ID} characters")
    if len(entries) > limits.max_append_batch:
        raise errors.InvalidArgument(f"at most {limits.max_append_batch} entries per call")
    for entry in entries:
        check_entry(entry)


def check_entry(entry: NewLogEntry) -> None:
    if len(entry.message) > MAX_MESSAGE:
        raise errors.InvalidArgument(f"a log message is at most {MAX_MESSAGE} characters")
    if "\x00" in entry.message:  # PostgreSQL's text cannot hold it: refused on every store alike
        raise errors.InvalidArgument("a log message may not contain U+0000 (NUL)")
    if entry.timestamp is not None and not MIN_TIMESTAMP_US <= entry.timestamp <= MAX_TIMESTAMP_US:
        raise errors.InvalidArgument("a log entry's timestamp is between 0001-01-01 and 9999-12-31 (UTC)")
    if entry.entry_id and not is_canonical_uuid(entry.entry_id):
        raise errors.InvalidArgument(f"entry_id {entry.entry_id!r} is not a canonical lower-case UUID")
