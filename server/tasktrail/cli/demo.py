"""`tasktrail demo`: a control plane at work, through the SDK, until stopped.

Database creates and updates, node backups, restores with node_restore
children, switchovers and failovers, a host removal; a few of them fail, and
now and then someone cancels one. Log lines read like a real control plane's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import secrets
import signal
import time
from collections.abc import Awaitable, Callable

from tasktrail.client import (
    AsyncTaskClient,
    AsyncTaskWriter,
    TaskCanceled,
    WorkerPolicy,
    WorkerTask,
    default_target,
    default_token,
)

log = logging.getLogger("tasktrail.demo")

DATABASES = ("storefront", "inventory", "analytics", "billing")
HOSTS = ("host-1", "host-2", "host-3")
NODES = ("n1", "n2", "n3")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="drive a realistic control plane against a tasktrail server until stopped")
    p.add_argument("--target", default=None, help="host:port of tasktrail's gRPC port (TASKTRAIL_TARGET)")
    p.add_argument("--token", default=None, help="a writer token (TASKTRAIL_TOKEN; or ./data/dev-token)")
    p.add_argument("--concurrency", type=int, default=4, help="operations at a time")
    p.add_argument("--speed", type=float, default=1.0, help="2 runs twice as fast")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(run=run)


class Demo:
    def __init__(self, writer: AsyncTaskWriter, reader: AsyncTaskClient, speed: float, rng: random.Random) -> None:
        self.writer = writer
        self.reader = reader
        self.speed = speed
        self.rng = rng
        self.started = 0

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high) / self.speed)

    def instance(self, db: str, node: str) -> str:
        return f"{db}-{node}-{secrets.token_hex(4)}"

    async def step(self, t: WorkerTask, message: str, **fields: object) -> None:
        """One unit of work: a log line, some time, and a look for a cancel."""
        t.raise_if_canceled()
        t.log(message, **fields)
        await self.pause(0.2, 0.8)

    async def resources(self, t: WorkerTask, verb: str, db: str, node: str, fail: bool = False) -> None:
        host = self.rng.choice(HOSTS)
        await self.step(t, "refreshing current state")
        took = self.rng.randint(300, 4000)
        await self.step(t, f"finished refreshing current state (took {took / 1000:.3f}s)", duration_ms=took)
        for rtype, rid in (
            ("swarm.network", f"{db}-database"),
            ("swarm.postgres_service", self.instance(db, node)),
            ("swarm.pgbackrest_config", f"{db}-{node}-backup"),
        ):
            base = {"host_id": host, "resource_id": rid, "resource_type": rtype}
            await self.step(t, f"{verb} resource {rtype}::{rid}", **base)
            if fail and rtype == "swarm.postgres_service":
                t.log(f"error while {verb} resource {rtype}::{rid}", **base, success=False, error="timeout")
                raise RuntimeError(
                    f"failed to {verb.removesuffix('ing')}e resource {rtype}: timed out waiting for convergence"
                )
            took = self.rng.randint(200, 9000)
            await self.step(
                t,
                f"finished {verb} resource {rtype}::{rid} (took {took / 1000:.3f}s)",
                **base,
                duration_ms=took,
                success=True,
            )

    async def database_change(self, kind: str) -> None:
        db = self.rng.choice(DATABASES)
        task = await self.writer.create("database", db, kind)
        fail = self.rng.random() < 0.1
        async with self.writer.task(task.task_id) as t:
            await self.resources(t, "creating" if kind == "create" else "updating", db, self.rng.choice(NODES), fail)
            await t.commit_phase()
            await self.step(t, "applying configuration to every node")

    async def node_backup(self) -> None:
        db, node = self.rng.choice(DATABASES), self.rng.choice(NODES)
        instance = self.instance(db, node)
        task = await self.writer.create("database", db, "node_backup", node_name=node, instance_id=instance)
        async with self.writer.task(task.task_id) as t:
            label = time.strftime("%Y%m%d-%H%M%SF")
            for line in (
                f"P00   INFO: backup command begin 2.55.1: --exec-id={self.rng.randint(1000, 9999)}-"
                f"{secrets.token_hex(4)} --stanza=db",
                "P00   INFO: execute non-exclusive backup start: backup begins after the next regular checkpoint",
                f"P00   INFO: backup start archive = 0000000100000000000000{self.rng.randint(10, 99)}",
                f"P00   INFO: new backup label = {label}",
                f"P00   INFO: full backup size = {self.rng.uniform(5, 90):.1f}MB, "
                f"file total = {self.rng.randint(900, 1500)}",
                f"P00   INFO: backup command end: completed successfully ({self.rng.randint(2000, 9000)}ms)",
            ):
                await self.step(t, line)
            t.result(resource_id=label)

    async def restore(self) -> None:
        db = self.rng.choice(DATABASES)
        parent = await self.writer.create("database", db, "restore")
        nodes = self.rng.sample(NODES, 2)
        children = [
            await self.writer.create("database", db, "node_restore", parent_id=parent.task_id, node_name=n)
            for n in nodes
        ]
        async with self.writer.task(parent.task_id) as t:
            await self.step(t, f"restoring database {db} from its latest backup")
            await asyncio.gather(*(self.node_restore(c.task_id) for c in children))
            await self.step(t, "restore finished on every node")

    async def node_restore(self, task_id: str) -> None:
        async with self.writer.task(task_id) as t:
            for line in (
                "P00   INFO: restore command begin 2.55.1",
                "P00   INFO: restore size = 22.1MB",
                "P00   INFO: restore command end: completed successfully",
            ):
                await self.step(t, line)

    async def switchover(self, kind: str) -> None:
        db, node = self.rng.choice(DATABASES), self.rng.choice(NODES)
        candidate = self.instance(db, self.rng.choice([n for n in NODES if n != node]))
        task = await self.writer.create("database", db, kind, node_name=node, instance_id=candidate)
        async with self.writer.task(task.task_id) as t:
            await self.step(t, f"{kind} of {node} to {candidate} requested")
            await self.step(t, "waiting for the candidate to catch up", lag_bytes=self.rng.randint(0, 4096))
            await t.commit_phase()
            await self.step(t, f"{candidate} is the new primary")

    async def remove_host(self) -> None:
        host = self.rng.choice(HOSTS)
        task = await self.writer.create("host", host, "remove_host", host_id=host)
        async with self.writer.task(task.task_id) as t:
            await self.step(t, f"draining {host}")
            await self.step(t, f"removing host {host} from the cluster", host_id=host)

    async def one(self) -> None:
        choices: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (4, lambda: self.database_change("update")),
            (2, lambda: self.database_change("create")),
            (3, self.node_backup),
            (1, self.restore),
            (1, lambda: self.switchover("switchover")),
            (0.5, lambda: self.switchover("failover")),
            (0.3, self.remove_host),
        ]
        work = self.rng.choices([c for _, c in choices], weights=[w for w, _ in choices])[0]
        self.started += 1
        try:
            await work()
        except RuntimeError as exc:
            log.info("an operation failed, as some do: %s", exc)
        except TaskCanceled:
            log.info("an operation was canceled")

    async def canceller(self) -> None:
        """Now and then, somebody cancels a running operation."""
        while True:
            await self.pause(5, 15)
            async for task in self.reader.list(statuses=["running"], page_size=20):
                if self.rng.random() < 0.3:
                    with contextlib.suppress(Exception):
                        await self.reader.cancel(task.task_id)
                        log.info("canceled %s %s of %s", task.type, task.task_id, task.entity_id)
                    break


async def drive(
    target: str, token: str | None, concurrency: int, speed: float, duration: float | None, seed: int | None
) -> int:
    rng = random.Random(seed)
    writer = AsyncTaskWriter(
        target, token, worker_name="demo-worker", policy=WorkerPolicy(lease=10.0, flush_interval=0.2)
    )
    reader = AsyncTaskClient(target, token)
    demo = Demo(writer, reader, speed, rng)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    running: set[asyncio.Task[None]] = set()
    canceller = asyncio.create_task(demo.canceller())
    print(f"tasktrail demo: driving {target} with {concurrency} operations at a time; Ctrl-C stops it", flush=True)
    try:
        while not stop.is_set():
            while len(running) < concurrency and not stop.is_set():
                job = asyncio.create_task(demo.one())
                running.add(job)
                job.add_done_callback(running.discard)
                await demo.pause(0.1, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        canceller.cancel()
        print(f"tasktrail demo: stopping; letting {len(running)} operations finish", flush=True)
        _done, left = await asyncio.wait(running, timeout=30) if running else (set(), set())
        for job in left:
            job.cancel()  # an operation stopped half-way ends its task as failed, as a stopped worker would
        await asyncio.gather(canceller, *left, return_exceptions=True)
        await writer.close()
        await reader.close()
    print(f"tasktrail demo: ran {demo.started} operations", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(
        drive(
            args.target or default_target(),
            args.token or default_token(),
            args.concurrency,
            args.speed,
            args.duration,
            args.seed,
        )
    )
