"""The soak: SECONDS of mixed load (creates, appends, reads, 200 followers,
cancels, sweeps every 5 s of tasks kept 30 s) with a process killed every
minute (Envoy and the replicas after the first, in turn), against `tasktrail
up`. Every 10 s it notes the resident memory and open descriptors of the
first server process (never killed: the one whose growth is the figure) and
of Envoy. Prints the curve, the growth from minute 2 to the end, every answer
the clients saw by code, and the followers' checks.

    .venv/bin/python -m bench.faults --soak 600 [--store postgres] [--replicas N]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# What a client may see during a kill (a connection refused or reset, REST 503,
# gRPC UNAVAILABLE past the SDK's retries), or by the load's own design: a cancel
# of a task that has just ended, a worker whose task was canceled before it
# claimed it (FAILED_PRECONDITION TASK_TERMINAL).
DOCUMENTED = (
    "UNAVAILABLE",
    " 503",
    "ConnectError",
    "RemoteProtocolError",
    "ReadError",
    "CancelTask FAILED_PRECONDITION",
    "worker FAILED_PRECONDITION TASK_TERMINAL",
)


def memory(pid: int) -> tuple[float, float, int]:
    """Resident memory, its private part (MB: what a leak grows; the rest is
    mapped files, such as SQLite's memory-mapped reads), and open descriptors."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)

    def mb(key: str) -> float:
        return int(status[key].split()[0]) / 1000

    return mb("VmRSS"), mb("RssAnon"), len(os.listdir(f"/proc/{pid}/fd"))


def run(store: str, replicas: int | None, seconds: float) -> int:
    replicas = replicas or (3 if store == "postgres" else 2)
    os.environ["TASKTRAIL_TEST_DATABASE"] = PG if store == "postgres" else "sqlite"
    from tests.support.faults import children
    from tests.support.stack import start_stack, stop_stack

    print(f"soak on {store}, {replicas} server processes, {seconds:.0f} s; a kill every 60 s")
    with tempfile.TemporaryDirectory(prefix="tasktrail-soak-") as tmp:
        work = Path(tmp)
        extra = ("--retention", "database=30", "--sweep-interval", "5")
        stack = start_stack(work / "stack", "--no-sample", *extra, replicas=replicas)
        first_port = stack.server_ports[0]
        summary_path = work / "summary.json"
        load = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.soak_load", stack.grpc_target, stack.token, stack.rest),
                *(str(seconds), str(summary_path)),
            ],
            stdout=sys.stdout,
            stderr=subprocess.STDOUT,
        )
        samples: list[tuple[float, float, float, int, float, int]] = []
        kills: list[str] = []
        try:
            started = time.monotonic()
            next_kill, turn = 60.0, 0
            while load.poll() is None and time.monotonic() - started < seconds + 120:
                time.sleep(10 - (time.monotonic() - started) % 10)
                at = time.monotonic() - started
                kids = children(stack.proc.pid)
                first = next(p for p, c in kids.items() if " -m tasktrail serve " in c and f"--port {first_port} " in c)
                envoy = next((p for p, c in kids.items() if c.split()[0].endswith("/envoy")), None)
                rss, anon, fds = memory(first)
                envoy_rss, _, envoy_fds = memory(envoy) if envoy else (0.0, 0.0, 0)
                samples.append((at, rss, anon, fds, envoy_rss, envoy_fds))
                if at >= next_kill and at < seconds:
                    others = [p for p, c in kids.items() if " -m tasktrail serve " in c and p != first]
                    victims = [envoy, *others] if envoy else others
                    victim = victims[turn % len(victims)]
                    turn += 1
                    os.kill(victim, signal.SIGKILL)
                    kills.append(f"{at:.0f}s {'envoy' if victim == envoy else 'server'}")
                    next_kill += 60
            load.wait(180)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
            stop_stack(stack)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return report(samples, kills, summary)


def report(
    samples: list[tuple[float, float, float, int, float, int]], kills: list[str], summary: dict[str, Any]
) -> int:
    print("   at   server RSS MB  private MB  fds   envoy RSS MB  fds")
    for at, rss, anon, fds, erss, efds in samples:
        print(f"{at:5.0f}s  {rss:12.1f}  {anon:10.1f}  {fds:4d}   {erss:12.1f}  {efds:4d}")
    print("kills:", ", ".join(kills) or "none")
    later = [s for s in samples if s[0] >= 120]
    growth = 0.0
    if len(later) >= 2:
        first, last = later[0], later[-1]
        growth = (last[1] - first[1]) / first[1] * 100
        print(
            f"server from minute 2 to the end: RSS {first[1]:.1f} -> {last[1]:.1f} MB ({growth:+.1f} %), "
            f"private {first[2]:.1f} -> {last[2]:.1f} MB ({(last[2] - first[2]) / first[2] * 100:+.1f} %); "
            f"descriptors {first[3]} -> {last[3]} ({last[3] - first[3]:+d}); "
            f"envoy RSS {first[4]:.1f} -> {last[4]:.1f} MB, descriptors {first[5]} -> {last[5]}"
        )
    codes = summary.get("codes", {})
    for code, n in sorted(codes.items()):
        print(f"  {code}: {n}")
    follows = summary.get("follows", {})
    print("follows:", ", ".join(f"{k} {v}" for k, v in sorted(follows.items())))
    problems = summary.get("problems", [])
    for problem in problems[:10]:
        print("  PROBLEM", problem)
    undocumented = {
        code: n
        for code, n in codes.items()
        if not code.endswith((" OK", " 200", "worker ended")) and not any(d in code for d in DOCUMENTED)
    }
    print("errors outside the documented ones:", undocumented or 0)
    held = bool(summary) and not problems and not undocumented and (len(later) < 2 or growth < 10)
    print("every promise held" if held else "a promise broke")
    return 0 if held else 1
