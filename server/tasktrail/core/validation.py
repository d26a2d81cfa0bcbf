"""What the core accepts: identifiers, task and entry checks, and every size
limit in one place.

Every string, list, JSON value, page and frame a caller can make the service
hold or send has a bound here, checked before the store is touched, so that
SQLite and PostgreSQL answer alike (the columns are at least this wide) and no
request, however large or deep, costs more than its size. docs/security.md
lists them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tasktrail.core import errors
from tasktrail.core.ids import ROOM, is_canonical_uuid, parse_uuid
from tasktrail.core.model import (
    NewLogEntry,
    NewTask,
    Progress,
    Result,
    Scope,
    TaskChanges,
    TaskError,
    TaskQuery,
)

# Control-plane ids: lower-case letters, digits and single hyphens, 1-36 long.
IDENTIFIER = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,34}[a-z0-9])?")
# google.protobuf.Timestamp's range (0001-01-01 to 9999-12-31 UTC), in µs.
MIN_TIMESTAMP_US = -62_135_596_800_000_000
MAX_TIMESTAMP_US = 253_402_300_799_999_999


@dataclass(frozen=True, slots=True)
class Bounds:
    """The size of everything a caller sends or makes the service keep, in
    characters (strings), items (lists) or encoded characters (JSON)."""

    # Ids and names: each fits its column on every store.
    task_id: int = 64  # a CRDB task id may be any printable string up to this
    entity_id: int = 64
    type: int = 128
    name: int = 255  # node_name, instance_id, host_id, worker_name
    request_id: int = 128
    append_id: int = 64
    lease_id: int = 64
    entry_id: int = 36
    page_token: int = 512
    # What a task holds.
    error_code: int = 128
    error_message: int = 16 * 1024
    error_details: int = 64
    detail_text: int = 4 * 1024
    progress_step: int = 1024
    progress_targets: int = 64
    result_id: int = 255
    result_path: int = 1024
    result_text: int = 4 * 1024
    json_value: int = 64 * 1024  # result.resource and an entry's fields, as JSON
    json_depth: int = 32
    # What a log entry holds.
    message: int = 64 * 1024
    # A task list's filters.
    statuses: int = 6
    types: int = 32


BOUNDS = Bounds()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounded answers and memory: no read returns, and no cache keeps, more than these."""

    max_page_size: int = 1000
    default_page_size: int = 100
    max_log_entries: int = 1000
    max_append_batch: int = 1000
    # A log page or follow frame is cut once its text passes this (characters of
    # messages and fields), so an answer stays well inside gRPC's 4 MiB.
    max_answer_text: int = 512 * 1024
    # Terminal tasks kept in memory per process (they never change), by count and by size.
    finished_cache_size: int = 100_000
    finished_cache_bytes: int = 64 * 1024 * 1024


def valid_identifier(value: str) -> bool:
    return IDENTIFIER.fullmatch(value) is not None and "--" not in value


def _text(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if len(value) > limit:
        raise errors.InvalidArgument(f"{name} is at most {limit} characters")
    if "\x00" in value:  # PostgreSQL's text cannot hold it: refused on every store alike
        raise errors.InvalidArgument(f"{name} may not contain U+0000 (NUL)")


def _json(name: str, value: Mapping[str, Any] | None) -> str | None:
    """A JSON object within the size and depth bounds; its JSON text (None
    where JSON has no words for a value in it: NaN, infinities)."""
    if value is None:
        return None
    depth = _depth(value, BOUNDS.json_depth)
    if depth > BOUNDS.json_depth:
        raise errors.InvalidArgument(f"{name} nests at most {BOUNDS.json_depth} levels deep")
    try:
        text: str | None = _ENCODER.encode(value)
    except ValueError:  # NaN and infinities: JSON has no word for them
        text = None
    if len(text if text is not None else repr(value)) > BOUNDS.json_value:
        raise errors.InvalidArgument(f"{name} is at most {BOUNDS.json_value} characters of JSON")
    return text


# Compact JSON, as the store keeps it.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _depth(value: Any, limit: int) -> int:
    """How deep `value`'s objects and arrays nest, counted up to just past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind in _SCALARS:  # the common case, without the Mapping ABC's slower check
            continue
        if kind is dict or isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend([(child, level + 1) for child in children if type(child) not in _SCALARS])
    return deepest


_SCALARS = frozenset({str, int, float, bool, type(None)})


def check_task_id(task_id: str, name: str = "task_id") -> None:
    """Any id a caller names: within the widest id's length (longer ones name no task)."""
    _text(name, task_id, BOUNDS.task_id)


def check_new_task(new: NewTask) -> None:
    if not new.type:
        raise errors.InvalidArgument("type is required")
    if not new.entity_id:
        raise errors.InvalidArgument("entity_id is required")
    _text("type", new.type, BOUNDS.type)
    _text("entity_id", new.entity_id, BOUNDS.entity_id)
    if new.scope in (Scope.DATABASE, Scope.HOST) and not valid_identifier(new.entity_id):
        raise errors.InvalidArgument(
            f"entity_id {new.entity_id!r}: valid IDs must be 1-36 characters long, contain only lowercase "
            "letters, digits, and hyphens, start and end with a letter or digit, and not contain two "
            "consecutive hyphens"
        )
    if new.task_id:
        if new.scope is Scope.CRDB:
            if len(new.task_id) > BOUNDS.task_id or not new.task_id.isprintable() or "/" in new.task_id:
                raise errors.InvalidArgument("a CRDB task id is up to 64 printable characters, without '/'")
        elif not is_canonical_uuid(new.task_id):
            raise errors.InvalidArgument(f"task_id {new.task_id!r} is not a canonical lower-case UUID")
    if new.parent_id:
        _text("parent_id", new.parent_id, BOUNDS.task_id)
        if not is_canonical_uuid(new.parent_id) and new.scope is not Scope.CRDB:
            raise errors.InvalidArgument(f"parent_id {new.parent_id!r} is not a canonical lower-case UUID")
    for name in ("node_name", "instance_id", "host_id"):
        _text(name, getattr(new, name), BOUNDS.name)
    _text("request_id", new.request_id, BOUNDS.request_id)
    if new.retention_us is not None and new.retention_us < 0:
        raise errors.InvalidArgument("result_ttl must not be negative")


def check_worker(worker_name: str | None, lease_id: str | None) -> None:
    _text("worker_name", worker_name, BOUNDS.name)
    _text("lease_id", lease_id, BOUNDS.lease_id)


def check_changes(changes: TaskChanges) -> None:
    for name in ("node_name", "instance_id", "host_id", "worker_name"):
        _text(name, getattr(changes, name), BOUNDS.name)
    if changes.error is not None:
        check_error(changes.error)
    if changes.progress is not None:
        check_progress(changes.progress)
    if changes.result is not None:
        check_result(changes.result)


def check_error(error: TaskError) -> None:
    _text("error.code", error.code, BOUNDS.error_code)
    _text("error.message", error.message, BOUNDS.error_message)
    if len(error.details) > BOUNDS.error_details:
        raise errors.InvalidArgument(f"error.details holds at most {BOUNDS.error_details} items")
    for detail in error.details:
        _text("error.details.target", detail.target, BOUNDS.name)
        _text("error.details.code", detail.code, BOUNDS.error_code)
        _text("error.details.message", detail.message, BOUNDS.detail_text)


def check_progress(progress: Progress) -> None:
    _text("progress.step", progress.step, BOUNDS.progress_step)
    if len(progress.targets) > BOUNDS.progress_targets:
        raise errors.InvalidArgument(f"progress.targets holds at most {BOUNDS.progress_targets} items")
    for target in progress.targets:
        _text("progress.targets.name", target.name, BOUNDS.name)
        _text("progress.targets.step", target.step, BOUNDS.progress_step)


def check_result(result: Result) -> None:
    _text("result.resource_id", result.resource_id, BOUNDS.result_id)
    _text("result.additional_resource_id", result.additional_resource_id, BOUNDS.result_id)
    _text("result.resource_path", result.resource_path, BOUNDS.result_path)
    _text("result.resource_title", result.resource_title, BOUNDS.name)
    _text("result.additional_info", result.additional_info, BOUNDS.result_text)
    _json("result.resource", result.resource)


def check_append(entries: Sequence[NewLogEntry], append_id: str | None, limits: Limits) -> list[str | None]:
    """Check a batch; each entry's fields as JSON text (None without fields),
    encoded once here for the digest and the store too."""
    _text("append_id", append_id, BOUNDS.append_id)
    if len(entries) > limits.max_append_batch:
        raise errors.InvalidArgument(f"at most {limits.max_append_batch} entries per call")
    return [check_entry(entry) for entry in entries]


def check_entry(entry: NewLogEntry) -> str | None:
    if len(entry.message) > BOUNDS.message:
        raise errors.InvalidArgument(f"a log message is at most {BOUNDS.message} characters")
    if "\x00" in entry.message:  # PostgreSQL's text cannot hold it: refused on every store alike
        raise errors.InvalidArgument("a log message may not contain U+0000 (NUL)")
    fields = _json("a log entry's fields", entry.fields) if entry.fields else None
    if entry.timestamp is not None and not MIN_TIMESTAMP_US <= entry.timestamp <= MAX_TIMESTAMP_US:
        raise errors.InvalidArgument("a log entry's timestamp is between 0001-01-01 and 9999-12-31 (UTC)")
    if entry.entry_id:
        check_entry_id(entry.entry_id)
    return fields


def check_entry_id(entry_id: str) -> None:
    """A caller's entry id: a canonical UUID that leaves room after it, so that
    the ids the server allocates after it stay canonical and increasing."""
    if not is_canonical_uuid(entry_id):
        raise errors.InvalidArgument(f"entry_id {entry_id!r} is not a canonical lower-case UUID")
    if parse_uuid(entry_id) >= ROOM:
        raise errors.InvalidArgument(f"entry_id {entry_id!r} leaves no room for the ids after it")


def check_cursor(name: str, value: str | None) -> None:
    """An id a read continues after (an entry id, a task id)."""
    _text(name, value, BOUNDS.task_id)


def check_counts(statuses: int, types: int) -> None:
    """A task list's filters, by count (before any is looked at)."""
    if statuses > BOUNDS.statuses:
        raise errors.InvalidArgument(f"statuses holds at most {BOUNDS.statuses} items")
    if types > BOUNDS.types:
        raise errors.InvalidArgument(f"types holds at most {BOUNDS.types} items")


def check_query(query: TaskQuery) -> None:
    check_counts(len(query.statuses), len(query.types))
    for type_ in query.types:
        if len(type_) > BOUNDS.type:
            raise errors.InvalidArgument(f"a type is at most {BOUNDS.type} characters")


def distinct(values: Iterable[Any]) -> tuple[Any, ...]:
    """`values` once each, in their first order (a filter's repeats change nothing)."""
    return tuple(dict.fromkeys(values))
