"""A follower process for the fault tests: follows one task's log through the
SDK, resuming by itself, and writes every message it gets to a file, then
"END <status>" once the task has ended.

    python -m tests.support.workers.follower TARGET TOKEN TASK_ID OUT
"""

from __future__ import annotations

import argparse
import sys

import grpc

from tasktrail.client import RetryPolicy, TaskClient
from tasktrail.v1 import task_pb2

RESUME = RetryPolicy(
    initial=0.05,
    maximum=1.0,
    deadline=120.0,
    codes=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}),
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("task_id")
    parser.add_argument("out")
    args = parser.parse_args()
    with TaskClient(args.target, args.token) as client, open(args.out, "w") as out:
        follow = client.follow(args.task_id, resume=RESUME)
        try:
            for entry in follow:
                out.write(entry.message + "\n")
                out.flush()
        except Exception as exc:
            out.write(f"ERROR {exc}\n")
            return 1
        status = task_pb2.TaskStatus.Name(task_pb2.TaskStatus.ValueType(follow.status or 0))
        out.write(f"END {status} resumes={follow.resumes}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
