"""A worker process for the fault tests: claims a task through the SDK and logs
COUNT numbered lines to it in batches, flushing each batch, then completes it,
whatever happens to the servers, Envoy and the connections meanwhile.

    python -m tests.support.workers.appender TARGET TOKEN TASK_ID COUNT [--batch N] [--pause S]

It prints "acked N" once the first N lines are acknowledged, "done" once the
task is COMPLETED, and "error <text>" if the SDK gave up.
"""

from __future__ import annotations

import argparse
import asyncio

from tasktrail.client import AsyncTaskWriter, RetryPolicy, Timeouts, WorkerPolicy


async def work(args: argparse.Namespace) -> int:
    retry = RetryPolicy(initial=0.05, maximum=1.0, deadline=args.deadline)
    policy = WorkerPolicy(lease=args.lease, heartbeat=args.lease / 6, flush_interval=0.05, batch_size=args.batch)
    writer = AsyncTaskWriter(
        args.target, args.token, worker_name="fault-worker", retry=retry, policy=policy, timeouts=Timeouts(call=5.0)
    )
    try:
        async with writer, writer.task(args.task_id) as t:
            print("claimed", flush=True)
            for i in range(args.count):
                t.log(f"line-{i:06d}", n=i)
                if i % args.batch == args.batch - 1:
                    await t.flush()
                    print(f"acked {i + 1}", flush=True)
                    await asyncio.sleep(args.pause)
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 1
    print("done", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("task_id")
    parser.add_argument("count", type=int)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--deadline", type=float, default=120.0)
    return asyncio.run(work(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
