"""The CLI as a person sees it: in a pseudo-terminal (pexpect), where it draws
a spinner, colours statuses, follows a log live, and stops at Ctrl-C with a
plain exit and no traceback."""

from __future__ import annotations

import os
import sys

import pexpect
import pytest

from tests.e2e.test_tails import append, complete, running_task
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def terminal(stack: Stack, *args: str) -> pexpect.spawn[str]:
    env = {**os.environ, "TASKTRAIL_TARGET": stack.grpc_target, "TASKTRAIL_TOKEN": stack.token, "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    return pexpect.spawn(
        sys.executable, ["-m", "tasktrail", *args], env=env, encoding="utf-8", timeout=20, dimensions=(40, 160)
    )


def ended(child: pexpect.spawn[str]) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0))


def test_wait_draws_a_spinner_then_the_task(stack: Stack) -> None:
    task_id = running_task(stack, "terminal")
    child = terminal(stack, "tasks", "wait", task_id)
    child.expect("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] " + task_id)  # the spinner, on stderr, on the terminal
    child.expect("running")
    complete(stack, task_id)
    child.expect("status +\x1b\\[32mcompleted")  # in green
    assert ended(child) == 0
    assert "Traceback" not in (child.before or "")


def test_follow_prints_lines_as_they_come_and_stops_at_ctrl_c(stack: Stack) -> None:
    task_id = running_task(stack, "terminal")
    child = terminal(stack, "logs", "follow", task_id)
    append(stack, task_id, "first line")
    child.expect("first line")
    append(stack, task_id, "second line")
    child.expect("second line")
    child.sendintr()  # Ctrl-C
    assert ended(child) == 130
    assert "Traceback" not in (child.before or "")
    complete(stack, task_id)


def test_escape_sequences_in_a_log_never_reach_the_terminal(stack: Stack) -> None:
    task_id = running_task(stack, "terminal")
    append(stack, task_id, "\x1b]0;pwned\x07title \x1b[2Jclear")
    complete(stack, task_id)
    child = terminal(stack, "logs", "get", task_id)
    child.expect(r"\\x1b\]0;pwned\\x07title \\x1b\[2Jclear")
    assert ended(child) == 0
