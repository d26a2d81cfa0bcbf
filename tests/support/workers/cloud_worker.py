"""A cloud worker process for the tests: creates a task of an account, then
moves it one status at a time, each step when a line arrives on stdin.

    python -m tests.support.workers.cloud_worker TARGET TOKEN ACCOUNT_ID COMMAND_TYPE --outcome completed|failed

It prints "created <task id>" (the task is received), then on the first line
"claimed" (processing-in-progress), on the second "ended" (processing-completed
with a subscription resource, or processing-error with a cloud error).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tasktrail.client import AsyncTaskWriter, TaskFailed, WorkerPolicy


async def next_line() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def work(args: argparse.Namespace) -> int:
    writer = AsyncTaskWriter(args.target, args.token, worker_name="cloud-worker", policy=WorkerPolicy(lease=5))
    async with writer:
        task = await writer.create("account", args.account_id, args.command_type)
        print(f"created {task.task_id}", flush=True)
        await next_line()
        async with writer.task(task.task_id) as t:
            t.log("processing", account=args.account_id)
            print("claimed", flush=True)
            await next_line()
            if args.outcome == "failed":
                raise TaskFailed(
                    "CLOUD_ACCOUNT_NOT_FOUND",
                    "Cloud account was not found",
                    http_status=404,
                    additional_info="cloud-account-does-not-exists",
                )
            t.result(
                resource_id="77899",
                additional_resource_id="111728",
                resource={"status": "success"},
                resource_path="/v1/subscriptions/77899",
                resource_title="getSubscriptionInformation",
            )
        print("ended", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("account_id")
    parser.add_argument("command_type")
    parser.add_argument("--outcome", choices=("completed", "failed"), default="completed")
    return asyncio.run(work(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
