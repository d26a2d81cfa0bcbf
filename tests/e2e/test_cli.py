"""The CLI and the demo, against a running stack, as the README shows them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasktrail.v1 import task_pb2, writer_service_pb2
from tests.support.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def tasktrail(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKTRAIL_TARGET": stack.grpc_target, "TASKTRAIL_TOKEN": stack.token, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tasktrail", *args], capture_output=True, text=True, timeout=120, env=env, check=check
    )


def as_json(stack: Stack, *args: str) -> Any:
    return json.loads(tasktrail(stack, *args, "--json").stdout)


def test_tasks_list_and_get(stack: Stack) -> None:
    out = tasktrail(stack, "tasks", "list", "--scope", "database", "--entity", "example").stdout
    header, *rows = out.splitlines()
    assert header.split() == ["TASK", "ID", "SCOPE", "ENTITY", "TYPE", "STATUS", "CREATED", "(UTC)", "ENDED", "(UTC)"]
    assert len(rows) == 8
    assert rows[-1].split()[:5] == [
        "d3cd2fab-4b1f-4eb9-b614-181c10b07acd",
        "database",
        "example",
        "create",
        "completed",
    ]
    listed = as_json(stack, "tasks", "list", "--scope", "database", "--entity", "example", "--status", "completed")
    assert {t["status"] for t in listed} == {"TASK_STATUS_COMPLETED"}
    got = tasktrail(stack, "tasks", "get", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd").stdout
    assert "status        completed" in got
    assert as_json(stack, "tasks", "get", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd")["type"] == "create"
    missing = tasktrail(stack, "tasks", "get", "00000000-0000-7000-8000-000000000000", check=False)
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr


def test_logs_get(stack: Stack) -> None:
    out = tasktrail(stack, "logs", "get", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd").stdout.splitlines()
    assert len(out) == 8
    assert out[0].endswith(" refreshing current state")
    assert out[1].endswith("(took 1.013408207s) duration_ms=1013")
    lines = tasktrail(
        stack,
        "logs",
        "get",
        "d3cd2fab-4b1f-4eb9-b614-181c10b07acd",
        "--after",
        "0d639fbe-72bf-41ca-a81d-f7a524083cd4",
        "--json",
    ).stdout.splitlines()  # one JSON document a line
    assert [json.loads(line)["entry_id"] for line in lines] == [
        "0e2ec40a-29ca-462d-ae45-05f5416e99b0",
        "1f2642aa-dcde-4204-83b3-0f66110e2cb6",
        "23c49cae-a2cf-42ba-ba95-8810b4ebf4b6",
    ]


def test_cancel_and_wait(stack: Stack) -> None:
    task = stack.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="cli", type="update"), timeout=10
    ).task
    timeout = tasktrail(stack, "tasks", "wait", task.task_id, "--timeout", "0.3", check=False)
    assert timeout.returncode == 2  # still pending when the timeout passed
    canceled = tasktrail(stack, "tasks", "cancel", task.task_id).stdout
    assert canceled.strip() == f"{task.task_id}: canceling"
    ended = tasktrail(stack, "tasks", "wait", task.task_id, check=False)
    assert ended.returncode == 1  # canceled: not a success
    assert "status        canceled" in ended.stdout
    done = stack.writer.CreateTask(
        writer_service_pb2.CreateTaskRequest(scope=task_pb2.SCOPE_DATABASE, entity_id="cli", type="update"), timeout=10
    ).task
    for status in (task_pb2.TASK_STATUS_RUNNING, task_pb2.TASK_STATUS_COMPLETED):
        stack.writer.UpdateTask(writer_service_pb2.UpdateTaskRequest(task_id=done.task_id, status=status), timeout=10)
    assert tasktrail(stack, "tasks", "wait", done.task_id).returncode == 0


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("demo")), "--no-sample")
    yield running
    stop_stack(running)


def test_demo_drives_a_control_plane(demo_stack: Stack) -> None:
    out = tasktrail(demo_stack, "demo", "--duration", "6", "--speed", "8", "--concurrency", "6", "--seed", "3")
    assert "tasktrail demo: ran" in out.stdout
    tasks = as_json(demo_stack, "tasks", "list", "--limit", "0")
    assert len(tasks) >= 10
    types = {t["type"] for t in tasks}
    assert {"update", "node_backup"} <= types
    statuses = {t["status"] for t in tasks}
    assert "TASK_STATUS_COMPLETED" in statuses
    assert not {"TASK_STATUS_RUNNING", "TASK_STATUS_PENDING"} & statuses  # it let its operations finish
    children = [t for t in tasks if t["type"] == "node_restore"]
    for child in children:
        assert child["parent_id"] in {t["task_id"] for t in tasks if t["type"] == "restore"}
    some = next(t for t in tasks if t["type"] == "node_backup")
    log = tasktrail(demo_stack, "logs", "get", some["task_id"]).stdout
    assert "P00   INFO: backup command begin" in log


def test_output_json_and_table(stack: Stack) -> None:
    """`-o json` is `--json`; `-o table` the default; logs print one JSON object a line."""
    task = "d3cd2fab-4b1f-4eb9-b614-181c10b07acd"
    assert json.loads(tasktrail(stack, "tasks", "get", task, "-o", "json").stdout) == as_json(
        stack, "tasks", "get", task
    )
    assert (
        tasktrail(stack, "tasks", "get", task, "--output", "table").stdout
        == tasktrail(stack, "tasks", "get", task).stdout
    )
    lines = tasktrail(stack, "logs", "get", task, "--output", "json").stdout.splitlines()
    assert json.loads(lines[0])["message"] == "refreshing current state"
    assert len(lines) == 8
    wrong = tasktrail(stack, "tasks", "list", "-o", "yaml", check=False)
    assert wrong.returncode == 2
    assert "invalid choice: 'yaml'" in wrong.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_knows_every_command(stack: Stack, shell: str, tmp_path: Path) -> None:
    script = tasktrail(stack, "completion", shell).stdout
    for word in ("tasks", "logs", "tokens", "--output", "--scope", "--log-format"):
        assert word in script
    if shell == "bash":  # the script loads in a real bash and completes a subcommand
        (tmp_path / "c.sh").write_text(script)
        probe = (
            f"source {tmp_path / 'c.sh'}; COMP_WORDS=(tasktrail tasks l); COMP_CWORD=2; COMP_LINE='tasktrail tasks l'; "
            "COMP_POINT=${#COMP_LINE}; _shtab_tasktrail; echo ${COMPREPLY[@]}"
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, check=True)
        assert done.stdout.split() == ["list"]


def test_an_unreachable_target_is_said_within_seconds(tmp_path: Path) -> None:
    """Before: 59 s, then gRPC's `failed to connect to all addresses`."""
    with socket.socket() as held:  # a port nothing answers on: bound, never listening
        held.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{held.getsockname()[1]}"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tasktrail", "tasks", "list", "--target", target, "--token", "x"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        took = time.monotonic() - started
    assert done.returncode == 1
    assert f"cannot reach a tasktrail server at {target} (--target) within 3 s" in done.stderr
    assert "Is `tasktrail up` running?" in done.stderr
    assert took < 10, took


@pytest.mark.parametrize("command", [["tokens", "list"], ["users", "list"], ["accounts", "create", "--name", "x"]])
def test_admin_commands_never_make_a_store(tmp_path: Path, command: list[str]) -> None:
    """Before: run from another directory, they made ./data/tasktrail.db there and
    minted credentials the running server never saw."""
    done = subprocess.run(
        [sys.executable, "-m", "tasktrail", *command], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1
    assert f"store: sqlite:///{tmp_path}/data/tasktrail.db" in done.stderr
    assert f"there is no store at {tmp_path}/data/tasktrail.db" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_admin_commands_say_which_store(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasktrail", "tokens", "list", *stack.store_args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stderr.startswith("store: ")
    assert "dev" in done.stdout


def test_a_client_command_starts_fast(stack: Stack) -> None:
    """A regression guard at twice the aims (0.25 s and 0.5 s; bench/cli_start.py
    measures): a client command must not import the server (SQLAlchemy, the core)."""

    def median(*args: str) -> float:
        took = []
        for _ in range(3):
            started = time.monotonic()
            tasktrail(stack, *args)
            took.append(time.monotonic() - started)
        return sorted(took)[1]

    assert median("--version") < 0.5
    assert median("tasks", "list", "--limit", "5") < 1.0
