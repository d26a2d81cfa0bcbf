"""One tasktrail server process: grpc.aio with every service, behind Envoy."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tasktrail.api import _servicer, lenient, reflection
from tasktrail.api.dialects.cloud import CloudSettings, CloudTaskService
from tasktrail.api.dialects.controlplane import ControlPlaneTaskService
from tasktrail.api.dialects.crdb import CrdbTaskService
from tasktrail.api.native import TaskService, TaskWriterService
from tasktrail.auth import accounts, tokens, users
from tasktrail.auth.gate import OPEN, TOKEN_REQUIRED, TOKEN_REQUIRED_REST, Checks, Gate
from tasktrail.auth.principal import Principal, Role
from tasktrail.auth.throttle import Throttle, ThrottleSettings
from tasktrail.cloud.v1 import cloud_pb2, cloud_pb2_grpc
from tasktrail.controlplane.v1 import controlplane_pb2, controlplane_pb2_grpc
from tasktrail.core import housekeeping, metrics
from tasktrail.core.changes import CHANGE_POLL_INTERVAL, ChangeFeed
from tasktrail.core.follow import FollowSettings, LogHub
from tasktrail.core.housekeeping import Housekeeping
from tasktrail.core.model import Access, Retention, Scope
from tasktrail.core.tasks import TaskCore, Timing
from tasktrail.core.validation import Limits
from tasktrail.crdb.v1 import crdb_pb2, crdb_pb2_grpc
from tasktrail.store import Store, StoreOptions, open_store
from tasktrail.store.ratelimit import SharedWindow
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


# Seconds in-flight calls get to finish on SIGTERM.
SHUTDOWN_GRACE = 10.0
# The first server process's port (`tasktrail up` counts up from it).
SERVER_PORT = 50061


# Which calls a server logs (--log-requests).
REQUEST_LOGS = ("writes", "all", "none")


@dataclass(frozen=True)
class ServerSettings:
    """What one `tasktrail serve` process needs."""

    database_url: str
    store: StoreOptions = field(default_factory=StoreOptions)
    host: str = "127.0.0.1"
    port: int = SERVER_PORT
    limits: Limits = field(default_factory=Limits)
    timing: Timing = field(default_factory=Timing)
    retention: Retention = field(default_factory=Retention)
    housekeeping: Housekeeping = field(default_factory=Housekeeping)
    follow: FollowSettings = field(default_factory=FollowSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    # Tokens on the gRPC API (always, unless a test turns them off), and on the control-plane REST port.
    auth: bool = True
    controlplane_auth: bool = False
    # How often a process looks for changes made by other processes.
    change_poll_interval: float = CHANGE_POLL_INTERVAL
    # Failed credential checks allowed per client address and per user name.
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    # How often an open stream checks its caller's credential again (seconds).
    recheck_interval: float = 2.0
    shutdown_grace: float = SHUTDOWN_GRACE
    # Prometheus counts (core/metrics.py); this process's own /metrics port (0: none).
    metrics: bool = True
    metrics_port: int = 0
    metrics_port_file: Path | None = None
    # Which calls are logged: every write and failure ("writes"), "all", or "none".
    log_requests: str = "writes"


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
        await self.store.close()


ANONYMOUS = Principal(
    token_id="anonymous",
    name="anyone on port 3000",
    role=Role.OPERATOR,  # reads and cancels, as port 3000 lets anyone; never writes
    access=Access.everything().restricted_to((Scope.DATABASE, Scope.HOST)),
)


def gates(store: Store, settings: ServerSettings) -> dict[str, Gate]:
    """One gate a surface (each says what is missing in its own words); all check
    the same credentials, count the same failures and the same request limits."""
    if not settings.auth:
        return dict.fromkeys(("native", "controlplane", "cloud", "crdb"), OPEN)
    verifier = users.Verifier(store)
    checks = Checks(
        token=functools.partial(tokens.authenticate, store),
        api_keys=functools.partial(accounts.authenticate, store),
        password=verifier.authenticate,
        throttle=Throttle(store, settings.throttle),
        limit=SharedWindow(store, settings.cloud.rate_limit, settings.cloud.rate_window),
    )
    token_missing = TOKEN_REQUIRED
    recheck = settings.recheck_interval
    # Through port 3000's REST face of the native API, anyone sees what that port
    # shows anyone (database and host tasks), unless it asks for a credential.
    anonymous = None if settings.controlplane_auth else ANONYMOUS
    return {
        "native": Gate(checks, token_missing, recheck=recheck, anonymous=anonymous),
        "controlplane": Gate(checks, TOKEN_REQUIRED_REST, recheck=recheck) if settings.controlplane_auth else OPEN,
        # The cloud API always needs an account's keys (a token works too, over gRPC, with a limit of its own).
        "cloud": Gate(
            checks, "the x-api-key and x-api-secret-key headers are required", limit_tokens=True, recheck=recheck
        ),
        # The enterprise API always needs a user's password (a token works too, over gRPC).
        "crdb": Gate(checks, "credentials are required: basic auth", recheck=recheck),
    }


async def start(settings: ServerSettings) -> Running:
    metrics.ENABLED = settings.metrics
    _servicer.LOG_REQUESTS = settings.log_requests
    if settings.metrics_port or settings.metrics_port_file:
        # Under `up` (a port file) only `up` reads them, on this machine: loopback, whatever --host is.
        host = "127.0.0.1" if settings.metrics_port_file else settings.host
        metrics.serve(host, settings.metrics_port, settings.metrics_port_file)
    store = open_store(settings.database_url, settings.store)
    await store.check_schema()
    feed = ChangeFeed(store, settings.change_poll_interval)
    core = TaskCore(store, settings.limits, settings.timing, settings.retention, feed)
    server = aio.server(options=GRPC_OPTIONS)
    gate = gates(store, settings)
    hub = LogHub(core, settings.follow)
    native = gate["native"]
    lenient.add_service(task_service_pb2_grpc.add_TaskServiceServicer_to_server, TaskService(core, native, hub), server)
    lenient.add_service(
        writer_service_pb2_grpc.add_TaskWriterServiceServicer_to_server, TaskWriterService(core, native), server
    )
    lenient.add_service(
        controlplane_pb2_grpc.add_ControlPlaneTaskServiceServicer_to_server,
        ControlPlaneTaskService(core, gate["controlplane"], hub),
        server,
    )
    lenient.add_service(
        cloud_pb2_grpc.add_CloudTaskServiceServicer_to_server,
        CloudTaskService(core, gate["cloud"], settings.cloud),
        server,
    )
    lenient.add_service(
        crdb_pb2_grpc.add_CrdbTaskServiceServicer_to_server, CrdbTaskService(core, gate["crdb"]), server
    )
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


__all__ = ["GRPC_OPTIONS", "Running", "ServerSettings", "run", "serve", "start"]
