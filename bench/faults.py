"""The bad day, measured: each fault of tests/faults, larger, with its figures.

For each scenario: entries acknowledged / stored / duplicated / out of order;
follower gaps and repeats (every follower must see every entry once, in
order, across its reconnections); what readers probing REST and gRPC every
50 ms saw meanwhile (errors by code, the longest outage); and how long the
service took to serve again once the fault ended, against a floor measured in
the same run: a server process started cold, to its first answer.

    .venv/bin/python -m bench.faults [--store sqlite|postgres] [--replicas N]
        [--scenario kill-server kill-envoy drop sigterm pg-restart full-disk]
        [--entries 10000] [--followers 50]
    .venv/bin/python -m bench.faults --soak 600     # see bench/soak.py

PostgreSQL runs use the machine's server (127.0.0.1:5432), a fresh database
each; the PostgreSQL restart uses a private cluster of its own either way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = ("kill-server", "kill-envoy", "drop", "sigterm", "pg-restart", "full-disk")
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=None, help="server processes (default: 1, 3 on postgres)")
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS", help="run the soak instead")
    args = parser.parse_args()
    if args.soak is not None:
        from bench import soak

        return soak.run(args.store, args.replicas, args.soak)
    replicas = args.replicas or (3 if args.store == "postgres" else 1)
    # The harness reads which store to use when it is imported.
    os.environ["TASKTRAIL_TEST_DATABASE"] = PG if args.store == "postgres" else "sqlite"
    os.environ["TASKTRAIL_TEST_REPLICAS"] = str(replicas)
    from tests.support import faults
    from tests.support.stack import start_stack, stop_stack

    print(f"faults on {args.store}, {replicas} server process(es); {args.entries} entries, {args.followers} followers")
    floor = cold_start(args.store)
    print(f"floor: a server process started cold answers in {floor:.2f} s")
    failed = 0
    for name in args.scenario:
        if name == "full-disk" and args.store != "sqlite":
            continue
        with tempfile.TemporaryDirectory(prefix=f"tasktrail-faults-{name}-") as tmp:
            work = Path(tmp)
            started = time.monotonic()
            if name == "full-disk":
                disk = faults.full_disk(work)
                for line in disk.lines():
                    print(line)
                failed += not (disk.stored == disk.acknowledged and disk.integrity == "ok" and disk.after_freeing)
                continue
            if name == "pg-restart":
                outcome = faults.postgres_restart(
                    work, count=args.entries, followers=args.followers, replicas=replicas, down=5.0
                )
            else:
                stack = start_stack(work / "stack", "--no-sample", replicas=replicas)
                again = None
                try:
                    if name in ("kill-server", "kill-envoy"):
                        kind = name.split("-")[1]
                        outcome = faults.kills(
                            stack, work / "w", kind, count=args.entries, followers=args.followers, every=2.0
                        )
                    elif name == "drop":
                        outcome = faults.dropped_connections(
                            stack, work / "w", count=args.entries, followers=args.followers, share=0.3
                        )
                    else:
                        outcome, again = faults.sigterm_restart(
                            stack, work / "w", count=args.entries // 2, followers=args.followers
                        )
                finally:
                    for running in (again, stack):
                        if running is not None and running.proc.poll() is None:
                            stop_stack(running)
            outcome.notes.pop("_latencies", None)
            for line in outcome.lines():
                print(line)
            if outcome.recovery is not None:
                print(f"  recovery / floor: {outcome.recovery / floor:.2f}")
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
            failed += not outcome.report.clean
    print("every promise held" if not failed else f"{failed} scenario(s) broke a promise")
    return 1 if failed else 0


def cold_start(store: str) -> float:
    """Seconds from spawning `tasktrail serve` on a migrated store to its first gRPC answer."""
    from bench.common import server
    from tasktrail.store import migrate
    from tests.support import databases

    with tempfile.TemporaryDirectory(prefix="tasktrail-floor-") as tmp:
        url = databases.fresh_url(Path(tmp))
        try:
            migrate(url)
            started = time.monotonic()
            with server(url, Path(tmp), "floor"):
                return time.monotonic() - started
        finally:
            databases.drop(url)


if __name__ == "__main__":
    sys.exit(main())
