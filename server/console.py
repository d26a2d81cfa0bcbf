"""`tasktrail tasks list|get|cancel|wait` and `tasktrail logs get`: a terminal
view of any tasktrail server, through the SDK. Human output (aligned tables,
colour on a terminal, a spinner while waiting) or `--json` for scripts."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

from tasktrail.client import FollowError, TaskClient, Timeouts
from tasktrail.client._base import STATUS_NAMES, TERMINAL, default_target, default_token
from tasktrail.protojson import struct_to_dict
from tasktrail.v1 import task_pb2

SCOPE_NAMES = {
    task_pb2.SCOPE_DATABASE: "database",
    task_pb2.SCOPE_HOST: "host",
    task_pb2.SCOPE_ACCOUNT: "account",
    task_pb2.SCOPE_CRDB: "crdb",
}
COLOURS = {
    "pending": "\033[2m",
    "running": "\033[36m",
    "canceling": "\033[33m",
    "completed": "\033[32m",
    "failed": "\033[31m",
    "canceled": "\033[35m",
}
RESET = "\033[0m"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# Exit codes of `tasks wait` (and `logs follow`): the task's end decides.
EXIT_COMPLETED, EXIT_UNSUCCESSFUL, EXIT_TIMEOUT = 0, 1, 2


def colour_enabled(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def paint(text: str, status: str, stream: TextIO = sys.stdout) -> str:
    code = COLOURS.get(status)
    return f"{code}{text}{RESET}" if code and colour_enabled(stream) else text


def table(header: Sequence[str], rows: Sequence[Sequence[str]], colour: Callable[[int, str], str] | None = None) -> str:
    """Columns aligned to their widest cell; `colour` may paint a cell after it is padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if colour is not None:
            cells = [colour(i, c) for i, c in enumerate(cells)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts.seconds)) if ts.seconds else ""


def status_name(value: int) -> str:
    return STATUS_NAMES.get(task_pb2.TaskStatus.ValueType(value), "unknown")


def as_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def describe(task: task_pb2.Task) -> str:
    status = status_name(task.status)
    rows = [
        ("task_id", task.task_id),
        ("scope", SCOPE_NAMES.get(task.scope, "")),
        ("entity_id", task.entity_id),
        ("type", task.type),
        ("status", paint(status, status)),
        ("created_at", when(task.created_at) + " UTC"),
    ]
    for name in ("parent_id", "node_name", "instance_id", "host_id", "worker_name"):
        if getattr(task, name):
            rows.append((name, getattr(task, name)))
    if task.HasField("started_at"):
        rows.append(("started_at", when(task.started_at) + " UTC"))
    if task.HasField("completed_at"):
        rows.append(("completed_at", when(task.completed_at) + " UTC"))
    if task.HasField("progress") and (task.progress.step or task.progress.percent):
        rows.append(("progress", f"{task.progress.percent:.0f}% {task.progress.step}".strip()))
    if task.HasField("error"):
        rows.append(("error", f"{task.error.message} ({task.error.code})" if task.error.code else task.error.message))
    if task.in_commit_phase:
        rows.append(("commit phase", "yes"))
    if task.HasField("expire_at"):
        rows.append(("expires_at", when(task.expire_at) + " UTC"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def task_rows(tasks: Sequence[task_pb2.Task]) -> list[list[str]]:
    return [
        [
            t.task_id,
            SCOPE_NAMES.get(t.scope, ""),
            t.entity_id,
            t.type,
            status_name(t.status),
            when(t.created_at),
            when(t.completed_at) if t.HasField("completed_at") else "",
        ]
        for t in tasks
    ]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default=None, help="host:port of tasktrail's gRPC port (TASKTRAIL_TARGET)")
        p.add_argument("--token", default=None, help="an access token (TASKTRAIL_TOKEN; or ./data/dev-token)")
        p.add_argument("--json", action="store_true", help="JSON for scripts")

    tasks = sub.add_parser("tasks", help="list, show, cancel and wait for tasks").add_subparsers(
        dest="tasks_command", required=True
    )
    p = tasks.add_parser("list", help="tasks, newest first")
    client_options(p)
    p.add_argument("--scope", choices=sorted(SCOPE_NAMES.values()))
    p.add_argument("--entity", help="a database id, host id, account or crdb_guid (needs --scope)")
    p.add_argument("--status", action="append", default=[], choices=list(STATUS_NAMES.values()))
    p.add_argument("--type", action="append", default=[])
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    p.add_argument("--asc", action="store_true", help="oldest first")
    p.set_defaults(run=run_list)

    p = tasks.add_parser("get", help="one task")
    client_options(p)
    p.add_argument("task_id")
    p.set_defaults(run=run_get)

    p = tasks.add_parser("cancel", help="request a cancel")
    client_options(p)
    p.add_argument("task_id")
    p.add_argument("--force", action="store_true", help="stop it even in its commit phase")
    p.set_defaults(run=run_cancel)

    p = tasks.add_parser(
        "wait", help="wait until a task ends; exit 0 if it completed, 1 if it failed or was canceled, 2 on timeout"
    )
    client_options(p)
    p.add_argument("task_id")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: for ever)")
    p.set_defaults(run=run_wait)

    logs = sub.add_parser("logs", help="read task logs").add_subparsers(dest="logs_command", required=True)
    p = logs.add_parser("get", help="a task's log, oldest first")
    client_options(p)
    p.add_argument("task_id")
    p.add_argument("--after", help="only entries after this entry id")
    p.set_defaults(run=run_logs)

    p = logs.add_parser(
        "follow",
        help="follow a log live, like kubectl logs -f, but resuming after a dropped connection; ends with the "
        "task: exit 0 if it completed, 1 if it failed or was canceled",
    )
    client_options(p)
    p.add_argument("task_id")
    p.add_argument("--after", help="only entries after this entry id")
    p.set_defaults(run=run_follow)


def _client(args: argparse.Namespace, wait: float = 30.0) -> TaskClient:
    return TaskClient(
        args.target or default_target(), args.token or default_token(), timeouts=Timeouts(call=10.0, wait=wait)
    )


def _failed(error: grpc.RpcError) -> int:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    print(f"tasktrail: {code.name if code else 'error'}: {details}", file=sys.stderr)
    return 1


def run_list(args: argparse.Namespace, _url: str) -> int:
    try:
        with _client(args) as client:
            found = client.list(
                args.scope, args.entity, statuses=args.status, types=args.type, ascending=args.asc, page_size=100
            )
            tasks = list(found if args.limit <= 0 else itertools.islice(found, args.limit))
    except grpc.RpcError as error:
        return _failed(error)
    if args.json:
        print(json.dumps([as_json(t) for t in tasks]))
        return 0
    if not tasks:
        print("no tasks")
        return 0
    header = ["TASK ID", "SCOPE", "ENTITY", "TYPE", "STATUS", "CREATED (UTC)", "ENDED (UTC)"]
    print(table(header, task_rows(tasks), lambda i, c: paint(c, c.strip()) if i == 4 else c))
    return 0


def run_get(args: argparse.Namespace, _url: str) -> int:
    try:
        with _client(args) as client:
            task = client.get(args.task_id)
    except grpc.RpcError as error:
        return _failed(error)
    print(json.dumps(as_json(task)) if args.json else describe(task))
    return 0


def run_cancel(args: argparse.Namespace, _url: str) -> int:
    try:
        with _client(args) as client:
            task = client.cancel(args.task_id, force=args.force)
    except grpc.RpcError as error:
        return _failed(error)
    status = status_name(task.status)
    print(json.dumps(as_json(task)) if args.json else f"{task.task_id}: {paint(status, status)}")
    return 0


def run_wait(args: argparse.Namespace, _url: str) -> int:
    started = time.monotonic()
    deadline = None if args.timeout is None else started + args.timeout
    spin = not args.json and colour_enabled(sys.stderr)
    frames = itertools.cycle(SPINNER)
    step = 0.25 if spin else 30.0  # a spinner wants the status often
    try:
        with _client(args, wait=step) as client:
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
        return _failed(error)
    finally:
        if spin:
            sys.stderr.write("\r\033[K")
    print(json.dumps(as_json(task)) if args.json else describe(task))
    if task.status == task_pb2.TASK_STATUS_COMPLETED:
        return EXIT_COMPLETED
    return EXIT_UNSUCCESSFUL if task.status in TERMINAL else EXIT_TIMEOUT


def format_entry(entry: task_pb2.LogEntry, stream: TextIO = sys.stdout) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.timestamp.seconds))
    fields = struct_to_dict(entry.fields) if entry.HasField("fields") else {}
    extra = " " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) if fields else ""
    dim = colour_enabled(stream)
    return f"{chr(27) + '[2m' if dim else ''}{stamp}{RESET if dim else ''} {entry.message}{extra}"


def run_logs(args: argparse.Namespace, _url: str) -> int:
    try:
        with _client(args) as client:
            for entry in client.log(args.task_id, args.after):
                print(json.dumps(as_json(entry)) if args.json else format_entry(entry))
    except grpc.RpcError as error:
        return _failed(error)
    return 0


def run_follow(args: argparse.Namespace, _url: str) -> int:
    try:
        with _client(args) as client:
            follow = client.follow(args.task_id, args.after)
            for entry in follow:
                print(json.dumps(as_json(entry)) if args.json else format_entry(entry), flush=True)
    except FollowError as error:
        print(f"tasktrail: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        return _failed(error)
    status = status_name(follow.status or 0)
    if args.json:
        print(json.dumps({"end": {"task_status": status}}))
    else:
        print(f"task {args.task_id} {paint(status, status)}", file=sys.stderr)
    return EXIT_COMPLETED if status == "completed" else EXIT_UNSUCCESSFUL
