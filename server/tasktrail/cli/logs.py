"""`tasktrail logs get|follow`: a task's log, as it is or live."""

from __future__ import annotations

import argparse
import json
import sys

import grpc

from tasktrail.cli._args import StrictParser
from tasktrail.cli._client import EXIT_COMPLETED, EXIT_UNSUCCESSFUL, add_client_options, connect, failed
from tasktrail.cli._output import as_json, format_entry, paint, status_name
from tasktrail.client import FollowError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logs = sub.add_parser("logs", help="read task logs").add_subparsers(
        dest="logs_command", required=True, parser_class=StrictParser
    )
    p = logs.add_parser("get", help="a task's log, oldest first")
    add_client_options(p)
    p.add_argument("task_id")
    p.add_argument("--after", help="only entries after this entry id")
    p.set_defaults(run=run_logs)

    p = logs.add_parser(
        "follow",
        help="follow a log live, like kubectl logs -f, but resuming after a dropped connection; ends with the "
        "task: exit 0 if it completed, 1 if it failed or was canceled",
    )
    add_client_options(p)
    p.add_argument("task_id")
    p.add_argument("--after", help="only entries after this entry id")
    p.set_defaults(run=run_follow)


def run_logs(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            for entry in client.log(args.task_id, args.after):
                print(json.dumps(as_json(entry)) if args.output == "json" else format_entry(entry))
    except grpc.RpcError as error:
        return failed(error)
    return 0


def run_follow(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            follow = client.follow(args.task_id, args.after)
            for entry in follow:
                print(json.dumps(as_json(entry)) if args.output == "json" else format_entry(entry), flush=True)
    except FollowError as error:
        print(f"tasktrail: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        return failed(error)
    status = status_name(follow.status or 0)
    if args.output == "json":
        print(json.dumps({"end": {"task_status": status}}))
    else:
        print(f"task {args.task_id} {paint(status, status)}", file=sys.stderr)
    return EXIT_COMPLETED if status == "completed" else EXIT_UNSUCCESSFUL
