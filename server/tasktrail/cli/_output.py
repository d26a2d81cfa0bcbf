"""How the CLI prints: aligned tables, colour on a terminal, times in UTC."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from google.protobuf import json_format

from tasktrail.client import STATUS_NAMES
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
    return "\n".join(f"{k.ljust(width)}  {printable(v) if k != 'status' else v}" for k, v in rows)


def task_rows(tasks: Sequence[task_pb2.Task]) -> list[list[str]]:
    return [[printable(cell) for cell in row] for row in _rows(tasks)]


def _rows(tasks: Sequence[task_pb2.Task]) -> list[list[str]]:
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


# Control characters a log line may hold (escape sequences, carriage returns, …),
# shown escaped: a line never moves the cursor, recolours or retitles a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with its control characters escaped (tabs and newlines stay)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_entry(entry: task_pb2.LogEntry, stream: TextIO = sys.stdout) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.timestamp.seconds))
    fields = struct_to_dict(entry.fields) if entry.HasField("fields") else {}
    extra = " " + " ".join(f"{printable(k)}={json.dumps(v)}" for k, v in fields.items()) if fields else ""
    dim = colour_enabled(stream)
    return f"{chr(27) + '[2m' if dim else ''}{stamp}{RESET if dim else ''} {printable(entry.message)}{extra}"


def utc_minute(us: int) -> str:
    """A time as the admin tables show it: 2026-11-30 13:52 (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(us // 1_000_000))
