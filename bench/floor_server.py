"""The floor: a gRPC server whose GetDatabaseTask returns a constant task.

Behind the same Envoy as tasktrail, it measures what Envoy, transcoding, gRPC
and the event loop cost with no store at all. Run: python bench/floor_server.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tasktrail.api.server import GRPC_OPTIONS
from tasktrail.controlplane.v1 import controlplane_pb2 as pb
from tasktrail.controlplane.v1 import controlplane_pb2_grpc as pb_grpc

TASK = pb.Task(
    scope="database",
    entity_id="db-0001",
    database_id="db-0001",
    task_id="019783f4-75f4-71e7-85a3-c9b96b345d77",
    created_at="2025-06-18T16:52:05Z",
    completed_at="2025-06-18T16:52:35Z",
    type="update",
    status="completed",
)


class Floor(pb_grpc.ControlPlaneTaskServiceServicer):
    async def GetDatabaseTask(self, request: pb.GetDatabaseTaskRequest, context: Any) -> pb.Task:
        return TASK


async def main(port: int) -> None:
    server = aio.server(options=GRPC_OPTIONS)
    pb_grpc.add_ControlPlaneTaskServiceServicer_to_server(Floor(), server)  # type: ignore[abstract]  # one method is enough
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1])))
