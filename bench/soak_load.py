"""The soak's clients, in one process: workers creating and running tasks
(numbered log lines, completed or canceled), followers tailing them live and
checking each tail, readers on REST and gRPC, and a canceler. Runs for
SECONDS, lets the tasks in hand end, and writes a JSON summary to OUT.

    python -m bench.soak_load TARGET TOKEN REST SECONDS OUT [--followers 200] [--workers 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

import grpc
import httpx

from tasktrail.client import AsyncTaskClient, AsyncTaskWriter, RetryPolicy, TaskStatus, TasktrailError

RESUME = RetryPolicy(
    initial=0.05,
    maximum=1.0,
    deadline=120.0,
    codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}),
)
PATIENT = RetryPolicy(initial=0.05, maximum=1.0, deadline=120.0)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.until: float = time.monotonic() + args.seconds
        self.codes: Counter[str] = Counter()  # every answer a client saw, by surface and code
        self.logged: dict[str, int] = {}  # task -> lines its worker logged, once it ended
        self.running: list[str] = []
        self.recent: list[str] = []
        self.follows: Counter[str] = Counter()
        self.problems: list[str] = []

    @property
    def going(self) -> bool:
        return time.monotonic() < self.until

    async def worker(self, writer: AsyncTaskWriter, n: int) -> None:
        while self.going:
            try:
                task = await writer.create("database", f"soak-{n % 20}", "node_backup")
                self.codes["gRPC CreateTask OK"] += 1
            except TasktrailError as error:
                self.codes[f"gRPC CreateTask {error.code().name}"] += 1
                await asyncio.sleep(0.5)
                continue
            self.running.append(task.task_id)
            self.recent = [*self.recent[-50:], task.task_id]
            lines = random.randint(20, 300)
            logged = 0
            try:
                async with writer.task(task.task_id) as t:
                    for i in range(lines):
                        t.log(f"line-{i:06d}")
                        logged += 1
                        if i % 10 == 9:
                            await asyncio.sleep(0.05)
                            t.raise_if_canceled()
                self.codes["worker ended"] += 1
            except TasktrailError as error:
                self.codes[f"worker {error.code().name} {error.reason}"] += 1
            except Exception as error:  # every way a worker can fail is a figure
                self.codes[f"worker {type(error).__name__}"] += 1
            self.logged[task.task_id] = logged
            self.running.remove(task.task_id)

    async def follower(self, client: AsyncTaskClient) -> None:
        while self.going:
            if not self.running:
                await asyncio.sleep(0.1)
                continue
            task_id = random.choice(self.running)  # a live tail: the task is being worked on
            seen: list[int] = []
            tail = client.follow(task_id, resume=RESUME)
            try:
                async for entry in tail:
                    if entry.message.startswith("line-"):
                        seen.append(int(entry.message[5:]))
            except TasktrailError as error:
                self.follows[f"ended {error.code().name}"] += 1
                continue
            self.follows["followed to the end"] += 1
            self.follows["resumes"] += tail.resumes
            if seen != list(range(len(seen))):
                self.problems.append(f"{task_id}: lines out of order, repeated or missing: {seen[:20]}...")
            if tail.status is TaskStatus.COMPLETED:
                for _ in range(100):  # the worker notes its count just after the end
                    if task_id in self.logged:
                        break
                    await asyncio.sleep(0.05)
                if self.logged.get(task_id) != len(seen):
                    self.problems.append(f"{task_id}: COMPLETED with {self.logged.get(task_id)} lines, saw {len(seen)}")

    async def reader(self, client: AsyncTaskClient, http: httpx.AsyncClient) -> None:
        while self.going:
            await asyncio.sleep(0.05)
            with contextlib.suppress(IndexError):
                task_id = random.choice(self.recent)
                try:
                    await client.get(task_id)
                    self.codes["gRPC GetTask OK"] += 1
                except TasktrailError as error:
                    self.codes[f"gRPC GetTask {error.code().name}"] += 1
            try:
                reply = await http.get(f"{self.args.rest}/v1/databases/soak-{random.randrange(20)}/tasks?limit=10")
                self.codes[f"REST list {reply.status_code}"] += 1
            except httpx.HTTPError as error:
                self.codes[f"REST list {type(error).__name__}"] += 1

    async def canceler(self, client: AsyncTaskClient) -> None:
        while self.going:
            await asyncio.sleep(1.0)
            with contextlib.suppress(IndexError):
                task_id = random.choice(self.running)
                try:
                    await client.cancel(task_id)
                    self.codes["gRPC CancelTask OK"] += 1
                except TasktrailError as error:
                    self.codes[f"gRPC CancelTask {error.code().name}"] += 1

    async def run(self) -> dict[str, Any]:
        a = self.args
        async with (
            AsyncTaskWriter(a.target, a.token, retry=PATIENT) as writer,
            AsyncTaskClient(a.target, a.token, retry=PATIENT) as reads,
            httpx.AsyncClient(timeout=10) as http,
        ):
            tails = [AsyncTaskClient(a.target, a.token) for _ in range(4)]  # 4 channels, 50 tails each
            jobs = [
                *(self.worker(writer, n) for n in range(a.workers)),
                *(self.follower(tails[n % 4]) for n in range(a.followers)),
                *(self.reader(reads, http) for _ in range(2)),
                self.canceler(reads),
            ]
            await asyncio.gather(*jobs)
            for tail in tails:
                await tail.close()
        return {"codes": dict(self.codes), "follows": dict(self.follows), "problems": self.problems[:50]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("rest")
    parser.add_argument("seconds", type=float)
    parser.add_argument("out")
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=6)
    args = parser.parse_args()
    summary = asyncio.run(Soak(args).run())
    with open(args.out, "w") as out:
        json.dump(summary, out)


if __name__ == "__main__":
    main()
