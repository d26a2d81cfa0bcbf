"""A follower process for the fault tests and bench: follows one task's log
through the SDK once for each OUT file (all in this one process, as an
application holding many tails would), resuming by itself, and writes every
message it gets to its file, then "END <status> resumes=<n>" once the task has
ended (or "ERROR <text>" if the SDK gave up).

    python -m tests.support.workers.follower TARGET TOKEN TASK_ID OUT [OUT ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from tasktrail.client import AsyncTaskClient, RetryPolicy
from tasktrail.v1 import task_pb2

RESUME = RetryPolicy(
    initial=0.05,
    maximum=1.0,
    deadline=120.0,
    codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}),
)


async def follow(client: AsyncTaskClient, task_id: str, path: str) -> bool:
    with open(path, "w") as out:  # noqa: ASYNC230 -- a small local file, written line by line
        tail = client.follow(task_id, resume=RESUME)
        try:
            async for entry in tail:
                out.write(entry.message + "\n")
                out.flush()
        except Exception as exc:
            out.write(f"ERROR {exc}\n")
            return False
        status = task_pb2.TaskStatus.Name(task_pb2.TaskStatus.ValueType(tail.status or 0))
        out.write(f"END {status} resumes={tail.resumes}\n")
    return True


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("task_id")
    parser.add_argument("outs", nargs="+")
    args = parser.parse_args()
    async with AsyncTaskClient(args.target, args.token) as client:
        ended = await asyncio.gather(*(follow(client, args.task_id, out) for out in args.outs))
    return 0 if all(ended) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
