"""A worker process for the tests: claims a task through the SDK and works on
it, a log line every few milliseconds, until a cancel reaches it.

    python -m tests.support.workers.worker TARGET TOKEN TASK_ID [--lease S] [--heartbeat S] [--commit]

It prints what it sees, one line each: "claimed <lease_id>", "commit phase",
"cancel <forced>"; its exit code is 0 once the task ended as it should.
"""

from __future__ import annotations

import argparse
import asyncio

from tasktrail.client import AsyncTaskWriter, TaskCanceled, WorkerPolicy


async def work(args: argparse.Namespace) -> int:
    policy = WorkerPolicy(lease=args.lease, heartbeat=args.heartbeat, flush_interval=0.05)
    writer = AsyncTaskWriter(args.target, args.token, worker_name=args.name, policy=policy)
    async with writer, writer.task(args.task_id) as t:
        print(f"claimed {t.lease_id}", flush=True)
        if args.commit:
            await t.commit_phase()
            print("commit phase", flush=True)
        step = 0
        while True:
            t.log(f"working, step {step}", step=step)
            step += 1
            if t.cancel_requested:
                print(f"cancel {'forced' if t.cancel_forced else 'graceful'}", flush=True)
                raise TaskCanceled()
            await asyncio.sleep(0.01)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("task_id")
    parser.add_argument("--name", default="test-worker")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--heartbeat", type=float, default=0.3)
    parser.add_argument("--commit", action="store_true")
    return asyncio.run(work(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
