"""What the commands that talk to a server share: where it is, the token,
and how a failed call is told."""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from tasktrail.cli._args import add_output
from tasktrail.client import DEFAULT_TARGET, TaskClient, Timeouts, Unavailable, default_target, default_token

# Exit codes of `tasks wait` and `logs follow`: the task's end decides.
EXIT_COMPLETED, EXIT_UNSUCCESSFUL, EXIT_TIMEOUT = 0, 1, 2


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=None, help="host:port of tasktrail's gRPC port (TASKTRAIL_TARGET)")
    p.add_argument("--token", default=None, help="an access token (TASKTRAIL_TOKEN; or ./data/dev-token)")
    add_output(p)


# How long a command waits for a server before it says it cannot reach one.
CONNECT_TIMEOUT = 3.0


def connect(args: argparse.Namespace, wait: float = 30.0) -> TaskClient:
    target = args.target or default_target()
    client = TaskClient(target, args.token or default_token(), timeouts=Timeouts(call=10.0, wait=wait))
    try:
        client.connect(CONNECT_TIMEOUT)
    except grpc.RpcError:
        client.close()
        where = "--target" if args.target else "TASKTRAIL_TARGET" if os.environ.get("TASKTRAIL_TARGET") else "default"
        raise Unavailable(
            f"cannot reach a tasktrail server at {target} ({where}) within {CONNECT_TIMEOUT:g} s. Is "
            "`tasktrail up` running? Give its gRPC port with --target host:port or TASKTRAIL_TARGET "
            f"(default {DEFAULT_TARGET})."
        ) from None
    return client


def failed(error: grpc.RpcError) -> int:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    print(f"tasktrail: {code.name if code else 'error'}: {details}", file=sys.stderr)
    return 1
