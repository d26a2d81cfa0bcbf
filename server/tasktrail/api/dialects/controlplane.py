"""The control-plane dialect: the pgEdge Control Plane task API.

Field names, status words, timestamps (RFC 3339, whole seconds), pagination
and error bodies are the original's. Where the original has a bug that no
client can depend on, it is fixed here; docs/control-plane-api.md lists
each choice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from google.api import httpbody_pb2

from tasktrail.api import Context, HttpError, HttpErrors, Surface, caller_access, endpoint, stream, tails
from tasktrail.api.dialects.goa import Validation, designed, go_uuid_parse
from tasktrail.api.dialects.rendering import Rendered, rfc3339
from tasktrail.auth.gate import OPEN, Gate
from tasktrail.auth.principal import Requirement
from tasktrail.controlplane.v1 import controlplane_pb2 as pb
from tasktrail.controlplane.v1 import controlplane_pb2_grpc as pb_grpc
from tasktrail.core import errors
from tasktrail.core.follow import BatchCache, Broken, LogHub
from tasktrail.core.model import (
    CONTROL_PLANE_SCOPES,
    Access,
    LogEntry,
    LogPage,
    Scope,
    Status,
    Task,
    TaskQuery,
    now_us,
)
from tasktrail.core.tasks import TaskCore
from tasktrail.core.validation import valid_identifier

SORT_ORDERS = ("asc", "ascend", "ascending", "desc", "descend", "descending")
ASCENDING = frozenset(SORT_ORDERS[:3])
SCOPES = ("database", "host")
MAX_ID_LENGTH = 36
HAS_MORE_HEADER = "x-has-more"

NOT_FOUND_MESSAGE = "no task found with the given ID"
INVALID_ID_MESSAGE = (
    "valid IDs must be 1-36 characters long, contain only lowercase letters, digits, and hyphens, "
    "start and end with a letter or digit, and not contain two consecutive hyphens"
)


def render_task(task: Task) -> pb.Task:
    out = pb.Task(
        scope=task.scope.value,
        entity_id=task.entity_id,
        task_id=task.task_id,
        created_at=rfc3339(task.created_at),
        type=task.type,
        status=task.status.value,
    )
    if task.scope is Scope.DATABASE:
        out.database_id = task.entity_id
        if task.host_id:
            out.host_id = task.host_id
    else:
        out.host_id = task.entity_id
    if task.parent_id:
        out.parent_id = task.parent_id
    if task.node_name:
        out.node_name = task.node_name
    if task.instance_id:
        out.instance_id = task.instance_id
    if task.completed_at is not None:
        out.completed_at = rfc3339(task.completed_at)
    if task.status is Status.FAILED and task.error is not None and task.error.message:
        out.error = task.error.message
    return out


def render_log(page: LogPage) -> pb.TaskLog:
    task = page.task
    # A log answer cut at the server's maximum never says the task has ended,
    # so that a client that polls until a terminal status (as pgEdge's own
    # client does) comes back for the rest.
    status = Status.RUNNING if page.has_more and task.status.terminal else task.status
    out = pb.TaskLog(scope=task.scope.value, entity_id=task.entity_id, task_id=task.task_id, task_status=status.value)
    if task.scope is Scope.DATABASE:
        out.database_id = task.entity_id
    if page.last_entry_id is not None:
        out.last_entry_id = page.last_entry_id
    for entry in page.entries:
        item = out.entries.add(timestamp=rfc3339(entry.timestamp), message=entry.message)
        if entry.fields:
            item.fields.update(entry.fields)
    return out


def _translate(exc: errors.CoreError) -> HttpError:
    if isinstance(exc, errors.NotFound):
        return designed("not_found", NOT_FOUND_MESSAGE)
    if isinstance(exc, errors.Unauthenticated):
        # 401 in the API's designed-error shape, when the port requires a token.
        return HttpError(
            401,
            {"name": "unauthorized", "message": exc.message},
            (("goa-error", "unauthorized"), ("www-authenticate", 'Bearer realm="tasktrail"')),
        )
    if isinstance(exc, errors.PermissionDenied):
        # A token that may not do this (a reader's cancel, with --controlplane-auth): 403, said so.
        return HttpError(403, {"name": "forbidden", "message": exc.message}, (("goa-error", "forbidden"),))
    if exc.reason == errors.STORE_FULL:
        return HttpError(
            507,
            {"name": "insufficient_storage", "message": exc.message},
            (("goa-error", "insufficient_storage"), ("retry-after", "5")),
        )
    if isinstance(exc, errors.ResourceExhausted):
        return HttpError(
            429,
            {"name": "too_many_requests", "message": exc.message},
            (("goa-error", "too_many_requests"), ("retry-after", str(exc.retry_after))),
        )
    if isinstance(exc, errors.Unavailable):
        return HttpError(
            503,
            {"name": "service_unavailable", "message": exc.message},
            (("goa-error", "service_unavailable"), ("retry-after", str(exc.retry_after))),
        )
    return designed("invalid_input", exc.message)


ERRORS = HttpErrors(_translate, internal=designed("server_error", "internal error"))


@dataclass(frozen=True, slots=True)
class Listing:
    after_task_id: str | None
    limit: int | None
    ascending: bool


class ControlPlaneTaskService(pb_grpc.ControlPlaneTaskServiceServicer):
    def __init__(self, core: TaskCore, gate: Gate = OPEN, hub: LogHub | None = None) -> None:
        self.core = core
        # Open unless the operator requires a token on this port.
        self.surface = Surface("controlplane", gate, ERRORS)
        self.hub = hub or LogHub(core)
        self.chunks: BatchCache[httpbody_pb2.HttpBody] = BatchCache()
        self.rendered = Rendered(render_task)

    @staticmethod
    def _access() -> Access:
        """Control-plane tasks, within the caller's token when the port requires one."""
        return caller_access(CONTROL_PLANE_SCOPES)

    # -- requests, decoded and validated as Goa's generated decoders do ----------

    @staticmethod
    def _listing(v: Validation, after_task_id: str, limit: str, sort_order: str) -> Listing:
        after = v.uuid("after_task_id", after_task_id) if after_task_id else None
        n = v.integer("limit", limit) if limit else None
        if sort_order:
            v.enum("sort_order", sort_order, SORT_ORDERS)
        return Listing(after, n, sort_order in ASCENDING)

    @staticmethod
    def _entity(v: Validation, name: str, value: str) -> None:
        v.max_length(name, value, MAX_ID_LENGTH)

    @staticmethod
    def _check_identifier(name: str, value: str) -> None:
        # The original answers a 500 for this (an unwrapped error); a 400 is right.
        if not valid_identifier(value):
            raise designed("invalid_input", f"{name}: {INVALID_ID_MESSAGE}")

    # -- shared bodies -----------------------------------------------------------------

    async def _list(self, context: Context, access: Access, listing: Listing) -> list[pb.Task]:
        cap = self.core.limits.max_page_size
        limit = cap if listing.limit is None or listing.limit <= 0 else min(listing.limit, cap)
        query = TaskQuery(ranges=access.ranges(), descending=not listing.ascending, limit=limit)
        if listing.after_task_id is None:
            page = await self.core.list_tasks(query)
        else:
            try:
                # Any control-plane task names a position, whichever list it is in.
                page = await self.core.list_after(query, listing.after_task_id, self._access())
            except errors.InvalidArgument:  # this list has no filters: only the cursor can be refused
                raise designed(
                    "invalid_input",
                    f'invalid after task ID "{listing.after_task_id}": not a known task and not a time-based UUID',
                ) from None
        if page.has_more:
            await context.send_initial_metadata(((HAS_MORE_HEADER, "true"),))
        return [render_task(t) for t in page.tasks]

    async def _log(
        self,
        context: Context,
        scope: Scope,
        entity_id: str,
        task_id: str,
        after_entry_id: str | None,
        limit: int | None,
    ) -> pb.TaskLog:
        tail = limit is not None and limit > 0
        page = await self.core.read_log(
            task_id,
            self._access().within(scope, entity_id),
            after_entry_id=after_entry_id,
            limit=limit if tail and limit is not None else 0,
            tail=tail,
        )
        if page.has_more:
            await context.send_initial_metadata(((HAS_MORE_HEADER, "true"),))
        return render_log(page)

    # -- database tasks ------------------------------------------------------------------

    @endpoint
    async def ListDatabaseTasks(
        self, request: pb.ListDatabaseTasksRequest, context: Context
    ) -> pb.ListDatabaseTasksResponse:
        v = Validation()
        self._entity(v, "database_id", request.database_id)
        listing = self._listing(v, request.after_task_id, request.limit, request.sort_order)
        v.check()
        self._check_identifier("database_id", request.database_id)
        tasks = await self._list(context, self._access().within(Scope.DATABASE, request.database_id), listing)
        return pb.ListDatabaseTasksResponse(tasks=tasks)

    @endpoint
    async def GetDatabaseTask(self, request: pb.GetDatabaseTaskRequest, context: Context) -> pb.Task:
        v = Validation()
        self._entity(v, "database_id", request.database_id)
        task_id = v.uuid("task_id", request.task_id)
        v.check()
        self._check_identifier("database_id", request.database_id)
        assert task_id is not None
        task = await self.core.get_task(task_id, self._access().within(Scope.DATABASE, request.database_id))
        return self.rendered(task)

    @endpoint
    async def GetDatabaseTaskLog(self, request: pb.GetDatabaseTaskLogRequest, context: Context) -> pb.TaskLog:
        v = Validation()
        self._entity(v, "database_id", request.database_id)
        task_id = v.uuid("task_id", request.task_id)
        after = v.uuid("after_entry_id", request.after_entry_id) if request.after_entry_id else None
        limit = v.integer("limit", request.limit) if request.limit else None
        v.check()
        self._check_identifier("database_id", request.database_id)
        assert task_id is not None
        return await self._log(context, Scope.DATABASE, request.database_id, task_id, after, limit)

    # Anyone may cancel on an open port, as on pgEdge's; with --controlplane-auth, an operator or a writer.
    @endpoint(need=Requirement.OPERATOR)
    async def CancelDatabaseTask(self, request: pb.CancelDatabaseTaskRequest, context: Context) -> pb.Task:
        v = Validation()
        self._entity(v, "database_id", request.database_id)
        v.max_length("task_id", request.task_id, MAX_ID_LENGTH)
        v.check()
        self._check_identifier("database_id", request.database_id)
        task_id, problem = go_uuid_parse(request.task_id)  # as the original's handler parses it
        if task_id is None:
            raise designed("invalid_input", f"invalid task ID: {problem}")
        try:
            result = await self.core.cancel(task_id, self._access().within(Scope.DATABASE, request.database_id))
        except errors.FailedPrecondition as exc:
            if exc.reason == errors.TASK_IN_COMMIT_PHASE:
                raise designed("invalid_input", "task is in its commit phase and cannot be cancelled") from None
            raise designed("invalid_input", "task must be running or pending to be cancelled") from None
        if not result.requested:
            # Already canceling: the original refuses a second cancel.
            raise designed("invalid_input", "task must be running or pending to be cancelled")
        return render_task(result.task)

    # -- host tasks --------------------------------------------------------------------

    @endpoint
    async def ListHostTasks(self, request: pb.ListHostTasksRequest, context: Context) -> pb.ListHostTasksResponse:
        v = Validation()
        self._entity(v, "host_id", request.host_id)
        listing = self._listing(v, request.after_task_id, request.limit, request.sort_order)
        v.check()
        self._check_identifier("host_id", request.host_id)
        tasks = await self._list(context, self._access().within(Scope.HOST, request.host_id), listing)
        return pb.ListHostTasksResponse(tasks=tasks)

    @endpoint
    async def GetHostTask(self, request: pb.GetHostTaskRequest, context: Context) -> pb.Task:
        v = Validation()
        self._entity(v, "host_id", request.host_id)
        task_id = v.uuid("task_id", request.task_id)
        v.check()
        self._check_identifier("host_id", request.host_id)
        assert task_id is not None
        task = await self.core.get_task(task_id, self._access().within(Scope.HOST, request.host_id))
        return self.rendered(task)

    @endpoint
    async def GetHostTaskLog(self, request: pb.GetHostTaskLogRequest, context: Context) -> pb.TaskLog:
        v = Validation()
        self._entity(v, "host_id", request.host_id)
        task_id = v.uuid("task_id", request.task_id)
        after = v.uuid("after_entry_id", request.after_entry_id) if request.after_entry_id else None
        limit = v.integer("limit", request.limit) if request.limit else None
        v.check()
        self._check_identifier("host_id", request.host_id)
        assert task_id is not None
        return await self._log(context, Scope.HOST, request.host_id, task_id, after, limit)

    # -- every control-plane task ---------------------------------------------------------

    @endpoint
    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksResponse:
        v = Validation()
        if request.scope:
            v.enum("scope", request.scope, SCOPES)
        if request.entity_id:
            v.max_length("entity_id", request.entity_id, MAX_ID_LENGTH)
        listing = self._listing(v, request.after_task_id, request.limit, request.sort_order)
        v.check()
        if request.entity_id and not request.scope:
            raise designed("invalid_input", "entity_id requires scope to be set")
        if request.entity_id:
            self._check_identifier("entity_id", request.entity_id)
        access = self._access()
        if request.scope:
            access = access.within(Scope(request.scope), request.entity_id or None)
        tasks = await self._list(context, access, listing)
        return pb.ListTasksResponse(tasks=tasks)

    # -- live tails ---------------------------------------------------------------------

    @stream
    async def FollowDatabaseTaskLog(
        self, request: pb.FollowDatabaseTaskLogRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        follow = self._follow(context, Scope.DATABASE, request.database_id, request.task_id, request.after_entry_id)
        async for chunk in follow:
            yield chunk

    @stream
    async def FollowHostTaskLog(
        self, request: pb.FollowHostTaskLogRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        follow = self._follow(context, Scope.HOST, request.host_id, request.task_id, request.after_entry_id)
        async for chunk in follow:
            yield chunk

    async def _follow(
        self, context: Context, scope: Scope, entity: str, task_id_text: str, after_text: str
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        fmt, last_event_id = tails.choose(context.invocation_metadata())
        name = "database_id" if scope is Scope.DATABASE else "host_id"
        v = Validation()
        self._entity(v, name, entity)
        task_id = v.uuid("task_id", task_id_text)
        # An EventSource's Last-Event-ID is its own resume point: it wins.
        after = None
        if last_event_id:
            after = v.uuid("Last-Event-ID", last_event_id)
        elif after_text:
            after = v.uuid("after_entry_id", after_text)
        v.check()
        self._check_identifier(name, entity)
        assert task_id is not None
        # Refused before the first chunk: the dialect's error, as for any call.
        task: Task = await self.hub.open(task_id, self._access().within(scope, entity))
        chunks = tails.stream(
            self.hub.follow(task, after),
            tails.Writer(fmt),
            render_entry,
            rfc3339,
            lambda status: status.value,
            _broken_body,
            now_us(),
            self.chunks,
        )
        async for chunk in chunks:
            yield chunk


def render_entry(entry: LogEntry) -> dict[str, Any]:
    """An entry as the log endpoint shows it."""
    out: dict[str, Any] = {"timestamp": rfc3339(entry.timestamp), "message": entry.message}
    if entry.fields:
        out["fields"] = entry.fields
    return out


def _broken_body(frame: Broken) -> dict[str, Any]:
    if isinstance(frame.error, errors.NotFound):
        return {"name": "not_found", "message": NOT_FOUND_MESSAGE}
    return {"name": "server_error", "message": frame.error.message}
