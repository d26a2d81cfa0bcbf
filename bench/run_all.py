"""Run every benchmark and print its figures (make bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ["bench.get_task", "bench.list_pages", "bench.follow", "bench.scale", "bench.cli_start"]

if __name__ == "__main__":
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        subprocess.run([sys.executable, "-m", module, *sys.argv[1:]], cwd=ROOT, check=True)
