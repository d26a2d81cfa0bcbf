"""Sample tasks for a new, empty store, written through the writer API.

They make every curl command of the pgEdge task documentation show real data:
the documentation's task id and log entry id exist here (the writer API takes
caller-supplied ids, as an import of an existing control plane would). The
development account gets cloud tasks, one in each status the cloud API shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

DATABASE_ID = "example"
HOST_ID = "host-1"
# The ids the documentation's curl commands use.
DOC_TASK_ID = "d3cd2fab-4b1f-4eb9-b614-181c10b07acd"
DOC_AFTER_ENTRY_ID = "0d639fbe-72bf-41ca-a81d-f7a524083cd4"
DOC_AFTER_TASK_ID = "404ecbe0-5cda-11f0-900b-a74a79e3bdba"
# The documented task's log: its entry ids sort around DOC_AFTER_ENTRY_ID.
DOC_ENTRY_IDS = (
    "044f1574-f037-4fc6-84d8-2a531289bafa",
    "072a98d2-3606-4efc-9fb8-5c0dd37ee915",
    "0acd8be1-46e4-4990-b0f9-70583f9d52f9",
    "0cb1e29c-658c-4a14-95e6-0af593bd04cf",
    DOC_AFTER_ENTRY_ID,
    "0e2ec40a-29ca-462d-ae45-05f5416e99b0",
    "1f2642aa-dcde-4204-83b3-0f66110e2cb6",
    "23c49cae-a2cf-42ba-ba95-8810b4ebf4b6",
)
INSTANCE = "example-n1-689qacsi"


def _resource(verb: str, rtype: str, rid: str, took_ms: int) -> list[tuple[str, dict[str, Any]]]:
    base = {"host_id": HOST_ID, "resource_id": rid, "resource_type": rtype}
    return [
        (f"{verb} resource {rtype}::{rid}", base),
        (
            f"finished {verb} resource {rtype}::{rid} (took {took_ms / 1000:.9f}s)",
            {**base, "duration_ms": took_ms, "success": True},
        ),
    ]


DOC_LOG: list[tuple[str, dict[str, Any]]] = [
    ("refreshing current state", {}),
    ("finished refreshing current state (took 1.013408207s)", {"duration_ms": 1013}),
    *_resource("creating", "swarm.network", "example-database", 412),
    *_resource("creating", "swarm.postgres_service", INSTANCE, 11873),
    *_resource("creating", "swarm.pgbackrest_stanza", "n1", 1181),
]


@dataclass
class SampleTask:
    type: str
    status: str  # the end state: pending, running, completed, failed
    scope: task_pb2.Scope.ValueType = task_pb2.SCOPE_DATABASE
    entity_id: str = DATABASE_ID
    task_id: str = ""
    node_name: str = ""
    instance_id: str = ""
    host_id: str = ""
    parent: int | None = None  # index of the parent in SAMPLES
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    entry_ids: tuple[str, ...] = ()
    error: str = ""
    error_code: str = "internal_error"
    http_status: int = 0
    error_details: tuple[tuple[str, str, str], ...] = ()
    result: task_pb2.TaskResult | None = None
    progress: task_pb2.TaskProgress | None = None
    worker_name: str = ""
    commit_phase: bool = False
    result_ttl: int = 0  # seconds; 0: the scope's default


def _backup_log() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("P00   INFO: backup command begin 2.55.1: --exec-id=1042-3e6c1a2f --stanza=db", {}),
        ("P00   INFO: execute non-exclusive backup start: backup begins after the next regular checkpoint", {}),
        ("P00   INFO: backup start archive = 000000010000000000000004, lsn = 0/4000028", {}),
        ("P00   INFO: new backup label = 20250618-175430F", {}),
        ("P00   INFO: full backup size = 22.1MB, file total = 968", {}),
        ("P00   INFO: backup command end: completed successfully (6512ms)", {}),
    ]


SAMPLES: list[SampleTask] = [
    SampleTask("create", "completed", task_id=DOC_TASK_ID, log=DOC_LOG, entry_ids=DOC_ENTRY_IDS),
    SampleTask(
        "update",
        "completed",
        log=[("refreshing current state", {}), *_resource("updating", "swarm.postgres_service", INSTANCE, 2310)],
    ),
    SampleTask("node_backup", "completed", instance_id=INSTANCE, log=_backup_log()),
    SampleTask("restore", "completed", log=[("restoring database from backup 20250618-175430F", {})]),
    SampleTask(
        "node_restore",
        "completed",
        node_name="n1",
        parent=3,
        log=[("P00   INFO: restore command begin 2.55.1", {}), ("P00   INFO: restore command end: completed", {})],
    ),
    SampleTask(
        "update",
        "failed",
        log=[
            ("refreshing current state", {}),
            (
                "error while updating resource swarm.postgres_service::" + INSTANCE,
                {"success": False, "error": "timeout"},
            ),
        ],
        error="failed to update resource swarm.postgres_service: timed out waiting for the service to converge",
    ),
    SampleTask(
        "switchover",
        "running",
        node_name="n1",
        instance_id="example-n2-7bd1kq2x",
        log=[("starting switchover to example-n2-7bd1kq2x", {})],
    ),
    SampleTask("restart_instance", "pending", instance_id=INSTANCE),
    SampleTask(
        "remove_host",
        "completed",
        scope=task_pb2.SCOPE_HOST,
        entity_id=HOST_ID,
        host_id=HOST_ID,
        log=[("removing host host-1 from the cluster", {}), ("host removed", {"host_id": HOST_ID})],
    ),
]


def cloud_samples(account_id: str) -> list[SampleTask]:
    """Tasks of the development account, one in each status the cloud API shows."""

    def cloud(type: str, status: str, **kw: Any) -> SampleTask:
        return SampleTask(type, status, scope=task_pb2.SCOPE_ACCOUNT, entity_id=account_id, **kw)

    return [
        cloud(
            "subscriptionCreateRequest",
            "completed",
            log=[("provisioning subscription 77899", {})],
            result=task_pb2.TaskResult(
                resource_id="77899",
                resource_path="/v1/subscriptions/77899",
                resource_title="getSubscriptionInformation",
            ),
        ),
        cloud(
            "cloudAccountDeleteRequest",
            "failed",
            error="Cloud account was not found",
            error_code="CLOUD_ACCOUNT_NOT_FOUND",
            http_status=404,
            result=task_pb2.TaskResult(additional_info="cloud-account-does-not-exists"),
        ),
        cloud("fixedDatabaseCreateRequest", "running", log=[("creating database", {})]),
        cloud("databaseBackupRequest", "pending"),
    ]


CRDB_GUID = "1d7741cc-1110-4e2f-bc6c-935292783d24"
# The ids of the Redis Enterprise documentation's examples.
CRDB_FINISHED_ID = "e1c49470-ae0b-4df8-885b-9c755dd614d0"
CRDB_FAILED_ID = "e32924c1-c8a1-4da6-a702-e1604ceab715"
# Sample CRDB results stay a month, not the API's 500 s, so that they can be tried.
CRDB_SAMPLE_TTL = 30 * 86_400


def _crdb(type: str, status: str, **kw: Any) -> SampleTask:
    return SampleTask(type, status, scope=task_pb2.SCOPE_CRDB, entity_id=CRDB_GUID, result_ttl=CRDB_SAMPLE_TTL, **kw)


def _clusters(worker: str, *steps: tuple[str, str]) -> task_pb2.TaskProgress:
    return task_pb2.TaskProgress(step=worker, targets=[task_pb2.TargetProgress(name=n, step=s) for n, s in steps])


CRDB_SAMPLES: list[SampleTask] = [
    _crdb(
        "create_crdb",
        "completed",
        task_id=CRDB_FINISHED_ID,
        worker_name="crdb_worker:1:0",
        progress=_clusters("done", ("cluster1.local", "done"), ("cluster2.local", "done")),
        log=[("creating the CRDB on 2 clusters", {}), ("committed on every cluster", {})],
    ),
    _crdb(
        "update_crdb",
        "failed",
        task_id=CRDB_FAILED_ID,
        worker_name="crdb_worker:1:0",
        error="Error [401]",
        error_details=(("", "internal_error", "Error [401]"),),
    ),
    _crdb(
        "flush_crdb",
        "running",
        worker_name="crdb_worker:1:0",
        progress=_clusters("flushing", ("cluster1.local", "flushed"), ("cluster2.local", "flushing")),
        commit_phase=True,
    ),
    _crdb("purge_crdb", "pending"),
]

_STATUS = {
    "running": task_pb2.TASK_STATUS_RUNNING,
    "completed": task_pb2.TASK_STATUS_COMPLETED,
    "failed": task_pb2.TASK_STATUS_FAILED,
}


def _entries(sample: SampleTask) -> list[task_pb2.LogEntry]:
    out = []
    for i, (message, fields) in enumerate(sample.log):
        entry = task_pb2.LogEntry(message=message)
        if fields:
            entry.fields.update(fields)
        if sample.entry_ids:
            entry.entry_id = sample.entry_ids[i]
        out.append(entry)
    return out


def write(channel: grpc.Channel, account_id: str | None = None) -> int:
    """Write the samples through the writer API (the channel carries a writer token)."""
    writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
    made: list[str] = []
    for sample in [*SAMPLES, *(cloud_samples(account_id) if account_id else []), *CRDB_SAMPLES]:
        request = writer_service_pb2.CreateTaskRequest(
            task_id=sample.task_id,
            scope=sample.scope,
            entity_id=sample.entity_id,
            type=sample.type,
            parent_id=made[sample.parent] if sample.parent is not None else "",
            node_name=sample.node_name,
            instance_id=sample.instance_id,
            host_id=sample.host_id,
        )
        if sample.result_ttl:
            request.result_ttl.FromSeconds(sample.result_ttl)
        created = writer.CreateTask(request, timeout=10).task
        made.append(created.task_id)
        if sample.status == "pending":
            continue
        started = writer_service_pb2.UpdateTaskRequest(task_id=created.task_id, status=task_pb2.TASK_STATUS_RUNNING)
        if sample.worker_name:
            started.worker_name = sample.worker_name
        if sample.progress is not None:
            started.progress.CopyFrom(sample.progress)
        if sample.commit_phase:
            started.in_commit_phase = True
        writer.UpdateTask(started, timeout=10)
        if sample.log:
            writer.AppendLogEntries(
                writer_service_pb2.AppendLogEntriesRequest(task_id=created.task_id, entries=_entries(sample)),
                timeout=10,
            )
        if sample.status in ("completed", "failed"):
            update = writer_service_pb2.UpdateTaskRequest(task_id=created.task_id, status=_STATUS[sample.status])
            if sample.error:
                details = [task_pb2.TaskErrorDetail(target=t, code=c, message=m) for t, c, m in sample.error_details]
                update.error.CopyFrom(
                    task_pb2.TaskError(
                        code=sample.error_code, message=sample.error, http_status=sample.http_status, details=details
                    )
                )
            if sample.result is not None:
                update.result.CopyFrom(sample.result)
            writer.UpdateTask(update, timeout=10)
    return len(made)


def write_if_empty(target: str, token: str, account_id: str | None = None, ca: Path | None = None) -> int:
    """Write the samples when the store holds no task at all; returns how many.
    `ca`: the gRPC port speaks TLS, with a certificate this CA signed."""
    opened = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read_bytes()))
        if ca is not None
        else grpc.insecure_channel(target)
    )
    with opened as plain:
        channel = grpc.intercept_channel(plain, WithToken(token))
        reader = task_service_pb2_grpc.TaskServiceStub(channel)
        if reader.ListTasks(task_service_pb2.ListTasksRequest(page_size=1), timeout=10).tasks:
            return 0
        return write(channel, account_id)


class WithToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)

    def _with_token(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self.metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)
