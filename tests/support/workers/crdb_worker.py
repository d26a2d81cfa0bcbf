"""A CRDB worker process for the tests, driven one command a line on stdin:

    python -m tests.support.workers.crdb_worker TARGET TOKEN CRDB_GUID OPERATION [--task-id ID] [--result-ttl S]

It creates the task and prints "created <id>"; then, each answered by "ok <command>":

    claim                      claims it (started), as worker crdb_worker:1:0
    progress W C=S [C=S ...]   the worker's step and each cluster's
    commit                     enters the commit phase
    await-cancel               waits until a cancel reaches it; prints "ok await-cancel graceful|forced"
    finish                     ends it: finished
    fail                       ends it: failed, one error per cluster
    cancel                     ends it: canceled (after a cancel reached it)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tasktrail.client import AsyncTaskWriter, TaskCanceled, TaskFailed, WorkerPolicy


async def commands() -> list[str]:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.split()


def say(text: str) -> None:
    print(text, flush=True)


async def work(args: argparse.Namespace) -> int:
    policy = WorkerPolicy(lease=2, heartbeat=0.2, flush_interval=0.05)
    writer = AsyncTaskWriter(args.target, args.token, worker_name="crdb_worker:1:0", policy=policy)
    async with writer:
        task = await writer.create(
            "crdb", args.crdb_guid, args.operation, task_id=args.task_id, result_ttl=args.result_ttl
        )
        say(f"created {task.task_id}")
        if await commands() != ["claim"]:
            return 2
        async with writer.task(task.task_id) as t:
            say("ok claim")
            while True:
                words = await commands()
                match words:
                    case ["progress", worker, *clusters]:
                        steps = [tuple(c.split("=", 1)) for c in clusters]
                        await t.progress(0, worker, [(name, step) for name, step in steps])
                    case ["commit"]:
                        await t.commit_phase()
                    case ["await-cancel"]:
                        await t.canceled()
                        say(f"ok await-cancel {'forced' if t.cancel_forced else 'graceful'}")
                        continue
                    case ["finish"]:
                        t.log("committed on every cluster")
                        break
                    case ["fail"]:
                        say("ok fail")
                        raise TaskFailed(
                            "internal_error",
                            "the update failed on 2 clusters",
                            details=(
                                ("cluster1.local", "internal_error", "Error [401]"),
                                ("cluster2.local", "timeout", "no answer from the cluster in 30 s"),
                            ),
                        )
                    case ["cancel"]:
                        say("ok cancel")
                        raise TaskCanceled()
                    case _:
                        say(f"unknown {words}")
                        return 2
                say(f"ok {words[0]}")
        say("ok finish")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("token")
    parser.add_argument("crdb_guid")
    parser.add_argument("operation")
    parser.add_argument("--task-id", default=None)
    parser.add_argument("--result-ttl", type=float, default=None)
    return asyncio.run(work(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
