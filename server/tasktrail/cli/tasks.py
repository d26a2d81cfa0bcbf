"""`tasktrail tasks list|get|cancel|wait`: a terminal view of any tasktrail
server, through the SDK. Human output (aligned tables, colour on a terminal, a
spinner while waiting) or `--json` for scripts."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import grpc

from tasktrail.cli._args import StrictParser
from tasktrail.cli._client import EXIT_COMPLETED, EXIT_TIMEOUT, EXIT_UNSUCCESSFUL, add_client_options, connect, failed
from tasktrail.cli._output import (
    SCOPE_NAMES,
    SPINNER,
    as_json,
    colour_enabled,
    describe,
    paint,
    status_name,
    table,
    task_rows,
)
from tasktrail.client import STATUS_NAMES, TERMINAL
from tasktrail.v1 import task_pb2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tasks = sub.add_parser("tasks", help="list, show, cancel and wait for tasks").add_subparsers(
        dest="tasks_command", required=True, parser_class=StrictParser
    )
    p = tasks.add_parser("list", help="tasks, newest first")
    add_client_options(p)
    p.add_argument("--scope", choices=sorted(SCOPE_NAMES.values()))
    p.add_argument("--entity", help="a database id, host id, account or crdb_guid (needs --scope)")
    p.add_argument("--status", action="append", default=[], choices=list(STATUS_NAMES.values()))
    p.add_argument("--type", action="append", default=[])
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    p.add_argument("--asc", action="store_true", help="oldest first")
    p.set_defaults(run=run_list)

    p = tasks.add_parser("get", help="one task")
    add_client_options(p)
    p.add_argument("task_id")
    p.set_defaults(run=run_get)

    p = tasks.add_parser("cancel", help="request a cancel")
    add_client_options(p)
    p.add_argument("task_id")
    p.add_argument("--force", action="store_true", help="stop it even in its commit phase")
    p.set_defaults(run=run_cancel)

    p = tasks.add_parser(
        "wait", help="wait until a task ends; exit 0 if it completed, 1 if it failed or was canceled, 2 on timeout"
    )
    add_client_options(p)
    p.add_argument("task_id")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: for ever)")
    p.set_defaults(run=run_wait)


def run_list(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            found = client.list(
                args.scope, args.entity, statuses=args.status, types=args.type, ascending=args.asc, page_size=100
            )
            tasks = list(found if args.limit <= 0 else itertools.islice(found, args.limit))
    except grpc.RpcError as error:
        return failed(error)
    if args.output == "json":
        print(json.dumps([as_json(t) for t in tasks]))
        return 0
    if not tasks:
        print("no tasks")
        return 0
    header = ["TASK ID", "SCOPE", "ENTITY", "TYPE", "STATUS", "CREATED (UTC)", "ENDED (UTC)"]
    print(table(header, task_rows(tasks), lambda i, c: paint(c, c.strip()) if i == 4 else c))
    return 0


def run_get(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            task = client.get(args.task_id)
    except grpc.RpcError as error:
        return failed(error)
    print(json.dumps(as_json(task)) if args.output == "json" else describe(task))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            task = client.cancel(args.task_id, force=args.force)
    except grpc.RpcError as error:
        return failed(error)
    status = status_name(task.status)
    print(json.dumps(as_json(task)) if args.output == "json" else f"{task.task_id}: {paint(status, status)}")
    return 0


def run_wait(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    spin = args.output != "json" and colour_enabled(sys.stderr)
    frames = itertools.cycle(SPINNER)
    step = 0.25 if spin else 30.0  # a spinner wants the status often
    try:
        with connect(args, wait=step) as client:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                task = client.wait(args.task_id, timeout=step if left is None else min(step, left))
                status = status_name(task.status)
                if spin:
                    progress = f" {task.progress.percent:.0f}% {task.progress.step}" if task.progress.step else ""
                    line = f"\r{next(frames)} {task.task_id} {paint(status, status, sys.stderr)}{progress}"
                    sys.stderr.write(f"{line}  ({time.monotonic() - started:.0f} s)\033[K")
                    sys.stderr.flush()
                if task.status in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                    break
    except grpc.RpcError as error:
        return failed(error)
    finally:
        if spin:
            sys.stderr.write("\r\033[K")
    print(json.dumps(as_json(task)) if args.output == "json" else describe(task))
    if task.status == task_pb2.TASK_STATUS_COMPLETED:
        return EXIT_COMPLETED
    return EXIT_UNSUCCESSFUL if task.status in TERMINAL else EXIT_TIMEOUT
