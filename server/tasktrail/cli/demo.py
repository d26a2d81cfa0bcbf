"""`tasktrail demo`: a control plane at work, through the SDK, until stopped.

Database creates and updates, node backups, restores with node_restore
children, switchovers and failovers, a host removal; a few of them fail, and
now and then someone cancels one. Log lines read like a real control plane's.

It prints a line per task as it starts and as it ends (time, type, entity, task
id, outcome). The token must be a writer's: it is checked before anything
starts. A failure the demo did not play (a refused call, a server gone) is
said, stops the demo, and makes it exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO

import grpc

from tasktrail.client import (
    AsyncTaskClient,
    AsyncTaskWriter,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    TaskCanceled,
    TasktrailError,
    Unauthenticated,
    WorkerPolicy,
    WorkerTask,
    default_target,
    default_token,
)
from tasktrail.v1 import task_pb2, writer_service_pb2

DATABASES = ("storefront", "inventory", "analytics", "billing")
HOSTS = ("host-1", "host-2", "host-3")
NODES = ("n1", "n2", "n3")
SCOPE_NAMES = {task_pb2.SCOPE_DATABASE: "database", task_pb2.SCOPE_HOST: "host"}
ENDS = {
    task_pb2.TASK_STATUS_COMPLETED: "completed",
    task_pb2.TASK_STATUS_FAILED: "failed",
    task_pb2.TASK_STATUS_CANCELED: "canceled",
}
# What to do when the token is not a writer's.
WRITER_HINT = (
    "pass a writer token of the database and host scopes with --token or TASKTRAIL_TOKEN "
    "(`tasktrail tokens create --name demo --role writer --grant database --grant host` makes one)"
)


class PlayedFailure(Exception):
    """A failure the demo plays (a convergence timeout): the task fails, as some do."""


class Failed(Exception):
    """A failure the demo did not play, already told on its task's line: it stops the demo."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(said(error))
        self.error = error


def said(error: BaseException) -> str:
    """An error in a line: the SDK's errors name their status code."""
    if isinstance(error, TasktrailError):
        return f"{error.status.name}: {error.message}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


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
    def __init__(
        self,
        writer: AsyncTaskWriter,
        reader: AsyncTaskClient,
        speed: float,
        rng: random.Random,
        out: TextIO | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.speed = speed
        self.rng = rng
        self.out = out or sys.stdout
        self.started = 0
        self.outcomes: dict[str, int] = {}
        # The first failure the demo did not play; it stops the demo.
        self.failure: Failed | None = None
        self.stop = asyncio.Event()

    # -- what it says --------------------------------------------------------------------

    def line(self, kind: str, scope: str, entity: str, task_id: str, outcome: str) -> None:
        """One line of what happens: time, type, entity, task id, outcome."""
        stamp = time.strftime("%H:%M:%S")
        print(f"{stamp}  {kind:<12} {scope + ' ' + entity:<20} {task_id:<36}  {outcome}", file=self.out, flush=True)

    def task_line(self, task: task_pb2.Task, outcome: str) -> None:
        self.line(task.type, SCOPE_NAMES.get(task.scope, "?"), task.entity_id, task.task_id, outcome)

    def failed(self, error: BaseException) -> Failed:
        """A failure the demo did not play: kept (the first one stops the demo), and returned to raise."""
        failure = error if isinstance(error, Failed) else Failed(error)
        if self.failure is None:
            self.failure = failure
        self.stop.set()
        return failure

    # -- tasks, told as they start and end -------------------------------------------------

    async def create(self, scope: str, entity: str, kind: str, **context: Any) -> task_pb2.Task:
        try:
            task = await self.writer.create(scope, entity, kind, **context)
        except Exception as error:
            self.line(kind, scope, entity, "-", f"error: {said(error)}")
            raise self.failed(error) from error
        self.task_line(task, "started")
        return task

    @contextlib.asynccontextmanager
    async def run(self, task: task_pb2.Task) -> AsyncIterator[WorkerTask]:
        """Run a task as its worker, and tell how it ended."""
        began = time.monotonic()
        worker = self.writer.task(task.task_id)
        try:
            async with worker as t:
                yield t
        except PlayedFailure as played:
            self.ended(task, "failed", f"failed: {played}", began)
            raise
        except asyncio.CancelledError:
            self.ended(task, "stopped", "failed: the demo stopped before it ended", began)
            raise
        except Exception as error:
            self.task_line(task, f"error: {said(error)}")
            raise self.failed(error) from error
        status = worker.task.status if worker.task is not None else task_pb2.TASK_STATUS_UNSPECIFIED
        end = ENDS.get(status, "ended")
        self.ended(task, end, end, began)

    def ended(self, task: task_pb2.Task, outcome: str, text: str, began: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.task_line(task, f"{text} ({time.monotonic() - began:.1f} s)")

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
                raise PlayedFailure(
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
        task = await self.create("database", db, kind)
        fail = self.rng.random() < 0.1
        async with self.run(task) as t:
            await self.resources(t, "creating" if kind == "create" else "updating", db, self.rng.choice(NODES), fail)
            await t.commit_phase()
            await self.step(t, "applying configuration to every node")

    async def node_backup(self) -> None:
        db, node = self.rng.choice(DATABASES), self.rng.choice(NODES)
        instance = self.instance(db, node)
        task = await self.create("database", db, "node_backup", node_name=node, instance_id=instance)
        async with self.run(task) as t:
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
        parent = await self.create("database", db, "restore")
        nodes = self.rng.sample(NODES, 2)
        children = [
            await self.create("database", db, "node_restore", parent_id=parent.task_id, node_name=n) for n in nodes
        ]
        async with self.run(parent) as t:
            await self.step(t, f"restoring database {db} from its latest backup")
            await asyncio.gather(*(self.node_restore(c) for c in children))
            await self.step(t, "restore finished on every node")

    async def node_restore(self, task: task_pb2.Task) -> None:
        async with self.run(task) as t:
            for line in (
                "P00   INFO: restore command begin 2.55.1",
                "P00   INFO: restore size = 22.1MB",
                "P00   INFO: restore command end: completed successfully",
            ):
                await self.step(t, line)

    async def switchover(self, kind: str) -> None:
        db, node = self.rng.choice(DATABASES), self.rng.choice(NODES)
        candidate = self.instance(db, self.rng.choice([n for n in NODES if n != node]))
        task = await self.create("database", db, kind, node_name=node, instance_id=candidate)
        async with self.run(task) as t:
            await self.step(t, f"{kind} of {node} to {candidate} requested")
            await self.step(t, "waiting for the candidate to catch up", lag_bytes=self.rng.randint(0, 4096))
            await t.commit_phase()
            await self.step(t, f"{candidate} is the new primary")

    async def remove_host(self) -> None:
        host = self.rng.choice(HOSTS)
        task = await self.create("host", host, "remove_host", host_id=host)
        async with self.run(task) as t:
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
        except (PlayedFailure, TaskCanceled, Failed):
            return  # its line said it (a played failure; a cancel carried out; a real failure, which stops the demo)
        except Exception as error:  # anything else is a failure too: said, and it stops the demo
            print(f"tasktrail demo: an operation failed: {said(error)}", file=sys.stderr, flush=True)
            self.failed(error)

    async def canceller(self) -> None:
        """Now and then, somebody cancels a running operation."""
        try:
            while True:
                await self.pause(5, 15)
                async for task in self.reader.list(statuses=["running"], page_size=20):
                    if self.rng.random() < 0.3:
                        await self.cancel(task)
                        break
        except asyncio.CancelledError:
            raise
        except Exception as error:
            print(f"tasktrail demo: listing running tasks failed: {said(error)}", file=sys.stderr, flush=True)
            self.failed(error)

    async def cancel(self, task: task_pb2.Task) -> None:
        try:
            await self.reader.cancel(task.task_id)
        except (FailedPrecondition, NotFound) as refused:  # it ended meanwhile, or is in its commit phase
            self.task_line(task, f"cancel refused: {refused.message}")
            return
        self.task_line(task, "cancel requested")


async def writer_check(writer: AsyncTaskWriter) -> list[str]:
    """Why the token cannot drive the demo, a sentence a line (none: it is a writer's).
    A heartbeat of a task that does not exist: the gate refuses any caller but a
    writer before it looks for the task."""
    probe = writer_service_pb2.HeartbeatRequest(task_id="tasktrail-demo-role-check", lease_id="tasktrail-demo")
    try:
        await writer.call(writer.stub.Heartbeat, probe, retry=False)
    except PermissionDenied as refused:
        return [f"the demo creates and runs tasks, which needs a writer token: {said(refused)}", WRITER_HINT]
    except Unauthenticated as refused:
        return [said(refused)]
    except TasktrailError as error:
        if error.status is grpc.StatusCode.UNAVAILABLE and not error.reason:  # the channel's, not the server's
            return [
                f"cannot reach a tasktrail server at {writer.target}: is `tasktrail up` running? "
                "Give its gRPC port with --target host:port or TASKTRAIL_TARGET"
            ]
        if error.status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return [f"the server cannot take the demo now: {said(error)}"]
    return []  # admitted (the task is unknown, as it should be)


async def drive(
    target: str, token: str | None, concurrency: int, speed: float, duration: float | None, seed: int | None
) -> int:
    rng = random.Random(seed)
    writer = AsyncTaskWriter(
        target, token, worker_name="demo-worker", policy=WorkerPolicy(lease=10.0, flush_interval=0.2)
    )
    reader = AsyncTaskClient(target, token)
    try:
        problems = await writer_check(writer)
        for problem in problems:
            print(f"tasktrail demo: {problem}", file=sys.stderr, flush=True)
        if problems:
            return 1
        return await _drive(Demo(writer, reader, speed, rng), target, concurrency, duration)
    finally:
        await writer.close()
        await reader.close()


async def _drive(demo: Demo, target: str, concurrency: int, duration: float | None) -> int:
    stop = demo.stop
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
        if demo.failure is None:
            print(f"tasktrail demo: stopping; letting {len(running)} operations finish", flush=True)
        _done, left = await asyncio.wait(running, timeout=30) if running else (set(), set())
        for job in left:
            job.cancel()  # an operation stopped half-way ends its task as failed, as a stopped worker would
        await asyncio.gather(canceller, *left, return_exceptions=True)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(demo.outcomes.items()))
    print(f"tasktrail demo: ran {demo.started} operations ({counts or 'none ended'})", flush=True)
    if demo.failure is not None:
        print(f"tasktrail demo: stopped by a failure: {demo.failure}", file=sys.stderr, flush=True)
        if isinstance(demo.failure.error, PermissionDenied):
            print(f"tasktrail demo: {WRITER_HINT}", file=sys.stderr, flush=True)
        return 1
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
