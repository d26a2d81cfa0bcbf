"""The core task model: what a task and a log entry are, whatever face shows them."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


def now_us() -> int:
    """Now, in microseconds since the Unix epoch (the store's unit of time)."""
    return time.time_ns() // 1000


class Status(enum.Enum):
    """The core lifecycle. Values are the words stored in the database."""

    PENDING = "pending"
    RUNNING = "running"
    CANCELING = "canceling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})


class Scope(enum.Enum):
    DATABASE = "database"
    HOST = "host"
    ACCOUNT = "account"
    CRDB = "crdb"


# Which scopes each family of faces shows.
CONTROL_PLANE_SCOPES = (Scope.DATABASE, Scope.HOST)


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    target: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TaskError:
    code: str
    message: str
    http_status: int = 0
    details: tuple[ErrorDetail, ...] = ()

    def to_json(self) -> JsonObject:
        out: JsonObject = {"code": self.code, "message": self.message}
        if self.http_status:
            out["http_status"] = self.http_status
        if self.details:
            out["details"] = [[d.target, d.code, d.message] for d in self.details]
        return out

    @classmethod
    def from_json(cls, data: JsonObject) -> TaskError:
        return cls(
            code=data.get("code", ""),
            message=data.get("message", ""),
            http_status=data.get("http_status", 0),
            details=tuple(ErrorDetail(*d) for d in data.get("details", ())),
        )


@dataclass(frozen=True, slots=True)
class TargetProgress:
    name: str
    step: str


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float = 0.0
    step: str = ""
    targets: tuple[TargetProgress, ...] = ()

    def to_json(self) -> JsonObject:
        return {"percent": self.percent, "step": self.step, "targets": [[t.name, t.step] for t in self.targets]}

    @classmethod
    def from_json(cls, data: JsonObject) -> Progress:
        return cls(
            percent=data.get("percent", 0.0),
            step=data.get("step", ""),
            targets=tuple(TargetProgress(*t) for t in data.get("targets", ())),
        )


@dataclass(frozen=True, slots=True)
class Result:
    resource_id: str = ""
    additional_resource_id: str = ""
    resource: JsonObject | None = None
    resource_path: str = ""
    resource_title: str = ""
    additional_info: str = ""

    def to_json(self) -> JsonObject:
        return {
            "resource_id": self.resource_id,
            "additional_resource_id": self.additional_resource_id,
            "resource": self.resource,
            "resource_path": self.resource_path,
            "resource_title": self.resource_title,
            "additional_info": self.additional_info,
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> Result:
        return cls(
            resource_id=data.get("resource_id", ""),
            additional_resource_id=data.get("additional_resource_id", ""),
            resource=data.get("resource"),
            resource_path=data.get("resource_path", ""),
            resource_title=data.get("resource_title", ""),
            additional_info=data.get("additional_info", ""),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the store holds it. Times are µs since the Unix epoch."""

    task_id: str
    scope: Scope
    entity_id: str
    type: str
    status: Status
    created_at: int
    updated_at: int
    status_changed_at: int
    parent_id: str | None = None
    node_name: str | None = None
    instance_id: str | None = None
    host_id: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    error: TaskError | None = None
    progress: Progress | None = None
    result: Result | None = None
    in_commit_phase: bool = False
    worker_name: str | None = None
    expire_at: int | None = None
    last_entry_id: str | None = None
    request_id: str | None = None
    lease_id: str | None = None
    lease_expires_at: int | None = None
    lease_duration_us: int | None = None
    cancel_forced: bool = False
    retention_us: int | None = None
    last_append_id: str | None = None
    last_append_ids: tuple[str, ...] = ()
    last_append_digest: str | None = None
    version: int = 0

    @property
    def position(self) -> tuple[int, str]:
        """Where the task stands in every list: (created_at, task_id)."""
        return (self.created_at, self.task_id)

    def held(self, now: int) -> bool:
        """A worker holds the task under a lease that has not lapsed."""
        return self.lease_id is not None and self.lease_expires_at is not None and self.lease_expires_at > now


@dataclass(frozen=True, slots=True)
class LogEntry:
    entry_id: str
    timestamp: int
    message: str
    fields: JsonObject | None = None
    # Characters of text (message and fields), as read from the store: answers are cut by it.
    size: int = field(default=0, compare=False)
    # The fields as JSON text, where the append encoded them already (the store keeps this text).
    fields_json: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NewLogEntry:
    """An entry to append. entry_id and timestamp are for imports of existing logs."""

    message: str
    fields: JsonObject | None = None
    timestamp: int | None = None
    entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskChanges:
    """What an update asks to change; None leaves a field as it is."""

    status: Status | None = None
    error: TaskError | None = None
    progress: Progress | None = None
    result: Result | None = None
    node_name: str | None = None
    instance_id: str | None = None
    host_id: str | None = None
    in_commit_phase: bool | None = None
    worker_name: str | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a task stays readable after it ended, per scope (None: for ever)."""

    database: int | None = None
    host: int | None = None
    account: int | None = 10 * 86_400 * 1_000_000
    crdb: int | None = 500 * 1_000_000

    def for_scope(self, scope: Scope) -> int | None:
        value: int | None = getattr(self, scope.value)
        return value


@dataclass(frozen=True, slots=True)
class NewTask:
    scope: Scope
    entity_id: str
    type: str
    task_id: str | None = None
    parent_id: str | None = None
    node_name: str | None = None
    instance_id: str | None = None
    host_id: str | None = None
    request_id: str | None = None
    # Result retention after completion, instead of the scope's default.
    retention_us: int | None = None


# A range of a task list: a whole scope (entity None) or one entity of it.
Range = tuple[Scope, str | None]


@dataclass(frozen=True, slots=True)
class Access:
    """Which tasks a caller may see: whole scopes, and single entities of a scope."""

    scopes: frozenset[Scope] = frozenset()
    entities: frozenset[tuple[Scope, str]] = frozenset()

    @classmethod
    def everything(cls) -> Access:
        return cls(scopes=frozenset(Scope))

    @classmethod
    def of(cls, *ranges: Range) -> Access:
        return cls(
            scopes=frozenset(s for s, e in ranges if e is None),
            entities=frozenset((s, e) for s, e in ranges if e is not None),
        )

    def allows(self, scope: Scope, entity_id: str) -> bool:
        return scope in self.scopes or (scope, entity_id) in self.entities

    def within(self, scope: Scope | None = None, entity_id: str | None = None) -> Access:
        """This access, narrowed to one scope, or one entity of it."""
        if scope is None:
            return self
        if entity_id is None:
            return Access(scopes=self.scopes & {scope}, entities=frozenset(x for x in self.entities if x[0] is scope))
        if self.allows(scope, entity_id):
            return Access(entities=frozenset({(scope, entity_id)}))
        return Access()

    def restricted_to(self, scopes: Iterable[Scope]) -> Access:
        keep = frozenset(scopes)
        return Access(scopes=self.scopes & keep, entities=frozenset(x for x in self.entities if x[0] in keep))

    def ranges(self) -> tuple[Range, ...]:
        """The index ranges a list over this access reads."""
        whole: list[Range] = [(s, None) for s in Scope if s in self.scopes]
        single: list[Range] = sorted(
            ((s, e) for s, e in self.entities if s not in self.scopes), key=lambda r: (r[0].value, r[1] or "")
        )
        return (*whole, *single)

    def __bool__(self) -> bool:
        return bool(self.scopes or self.entities)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A page of a task list. `after` is an exclusive position in the chosen order."""

    ranges: tuple[Range, ...]
    statuses: tuple[Status, ...] = ()
    types: tuple[str, ...] = ()
    descending: bool = True
    after: tuple[int, str] | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    has_more: bool


@dataclass(frozen=True, slots=True)
class LogPage:
    task: Task
    entries: list[LogEntry]
    # The id a client passes as after_entry_id next; None when nothing was read.
    last_entry_id: str | None
    has_more: bool = False
