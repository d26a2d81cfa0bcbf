"""One tasktrail server process: grpc.aio with every service, behind Envoy."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# grpc-stubs predates the asyncio health servicer.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from sqlalchemy.ext.asyncio import create_async_engine

from tasktrail import auth, housekeeping, lenient, migrate, reflection
from tasktrail.cloud.v1 import cloud_pb2, cloud_pb2_grpc
from tasktrail.config import ServerSettings
from tasktrail.controlplane.v1 import controlplane_pb2, controlplane_pb2_grpc
from tasktrail.core import TaskCore
from tasktrail.crdb.v1 import crdb_pb2, crdb_pb2_grpc
from tasktrail.dialects import cloud, controlplane, crdb
from tasktrail.dialects.cloud import CloudTaskService
from tasktrail.dialects.controlplane import ControlPlaneTaskService
from tasktrail.dialects.crdb import CrdbTaskService
from tasktrail.events import ChangeFeed
from tasktrail.follow import LogHub
from tasktrail.native import TaskService, TaskWriterService
from tasktrail.store import Store, open_store
from tasktrail.store.engine import PostgresStore, SqliteStore
from tasktrail.v1 import task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    writer_service_pb2.DESCRIPTOR.services_by_name["TaskWriterService"].full_name,
    controlplane_pb2.DESCRIPTOR.services_by_name["ControlPlaneTaskService"].full_name,
    cloud_pb2.DESCRIPTOR.services_by_name["CloudTaskService"].full_name,
    crdb_pb2.DESCRIPTOR.services_by_name["CrdbTaskService"].full_name,
)

# Followers may hold many streams: gRPC's default pending-request limits (1,000 soft,
# 3,000 hard) would refuse some when thousands connect at once.
GRPC_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


@dataclass
class Running:
    server: aio.Server
    store: Store
    core: TaskCore
    health: health_aio.HealthServicer
    port: int
    background: list[asyncio.Task[None]]
    hub: LogHub

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.hub.close()  # followers are told to resume elsewhere, rather than held to the grace period
        await self.server.stop(grace)
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        self.core.feed.close()
        await self.store.close()


async def check_schema(store: Store) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as raw:
            rows = raw.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall()
            current = raw.execute("SELECT version_num FROM alembic_version").fetchone() if rows else None
        head = migrate.head_revision()
        if current is None or current[0] != head:
            raise migrate.SchemaOutdated(
                f"the database schema is at revision {current[0] if current else 'none'} and this code needs "
                f"{head}: run `tasktrail migrate` first"
            )
    elif isinstance(store, PostgresStore):
        engine = create_async_engine(store.url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(migrate.check_revision)
        finally:
            await engine.dispose()


async def start(settings: ServerSettings) -> Running:
    store = open_store(settings.database_url, settings.store)
    await check_schema(store)
    feed = ChangeFeed(store, settings.change_poll_interval)
    core = TaskCore(store, settings.limits, settings.timing, settings.retention, feed)
    server = aio.server(options=GRPC_OPTIONS)
    gate = auth.Gate(store) if settings.auth else auth.OPEN
    rest_gate = auth.Gate(store, controlplane.refuse) if settings.auth and settings.controlplane_auth else auth.OPEN
    hub = LogHub(core, settings.follow)
    lenient.add_service(task_service_pb2_grpc.add_TaskServiceServicer_to_server, TaskService(core, gate, hub), server)
    lenient.add_service(
        writer_service_pb2_grpc.add_TaskWriterServiceServicer_to_server, TaskWriterService(core, gate), server
    )
    lenient.add_service(
        controlplane_pb2_grpc.add_ControlPlaneTaskServiceServicer_to_server,
        ControlPlaneTaskService(core, rest_gate, hub),
        server,
    )
    # The cloud API always needs an account's keys (a token works too, over gRPC).
    cloud_gate = (
        auth.Gate(store, cloud.refuse, "the x-api-key and x-api-secret-key headers are required")
        if settings.auth
        else auth.OPEN
    )
    lenient.add_service(
        cloud_pb2_grpc.add_CloudTaskServiceServicer_to_server,
        CloudTaskService(core, cloud_gate, settings.cloud),
        server,
    )
    # The enterprise API always needs a user's password (a token works too, over gRPC).
    crdb_gate = auth.Gate(store, crdb.refuse, "credentials are required: basic auth") if settings.auth else auth.OPEN
    lenient.add_service(crdb_pb2_grpc.add_CrdbTaskServiceServicer_to_server, CrdbTaskService(core, crdb_gate), server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable((*SERVICE_NAMES, health.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot listen on {settings.host}:{settings.port}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    chores = settings.housekeeping
    background = [
        asyncio.create_task(feed.run(), name="change-feed"),
        asyncio.create_task(housekeeping.reap_leases(core, chores.lease_check_interval), name="leases"),
        asyncio.create_task(housekeeping.sweep(core, chores.sweep_interval, chores.sweep_batch), name="sweep"),
    ]
    return Running(server, store, core, health_servicer, port, background, hub)


async def serve(settings: ServerSettings) -> None:
    """Serve until SIGTERM or SIGINT, then let in-flight calls finish."""
    running = await start(settings)
    log.info("tasktrail server listening on %s:%d", settings.host, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight calls (up to %.0f s)", settings.shutdown_grace)
    await running.stop(settings.shutdown_grace)


def run(settings: ServerSettings) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: it adds 5-10 % here
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


__all__ = ["GRPC_OPTIONS", "Running", "run", "serve", "start"]
