"""How long a CLI command takes, start to exit: `tasktrail --version` and
`tasktrail tasks list` against a live server, against the floor of the same
run: the interpreter starting and importing nothing (`python -c pass`).

    .venv/bin/python -m bench.cli_start [--runs 15]

Prints the median and the slowest of each, and the ratio of the medians to the
floor's. (tests/e2e/test_cli.py guards twice the aims: 0.25 s and 0.5 s.)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import make_token, server
from tasktrail.store import migrate


def timed(argv: Sequence[str], runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        took.append(time.perf_counter() - started)
    return took


def line(name: str, took: list[float], floor: float) -> str:
    median = statistics.median(took)
    slowest = max(took)
    ratio = median / floor
    return f"  {name:<34} median {median * 1000:6.0f} ms  slowest {slowest * 1000:6.0f} ms  ({ratio:.1f}x floor)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'tasktrail.db'}"
        migrate(url)
        token = make_token(url, "bench")
        with server(url, workdir) as running:
            floor = timed([sys.executable, "-c", "pass"], args.runs)
            version = timed([sys.executable, "-m", "tasktrail", "--version"], args.runs)
            listing = timed(
                [
                    sys.executable, "-m", "tasktrail", "tasks", "list",
                    "--target", f"127.0.0.1:{running.port}", "--token", token,
                ],
                args.runs,
            )  # fmt: skip
    base = statistics.median(floor)
    print(f"CLI start to exit, {args.runs} runs each (the floor: the interpreter alone)")
    print(line("python -c pass (floor)", floor, base))
    print(line("tasktrail --version", version, base))
    print(line("tasktrail tasks list (live server)", listing, base))


if __name__ == "__main__":
    main()
