"""GET /v1/databases/{id}/tasks/{task_id} through Envoy, on a store of 100,000
tasks, under concurrent load, against two floors measured in the same run,
each behind the same Envoy (bench/floor_server.py): a gRPC handler that
returns a constant task, and one that reads the task's row by primary key
straight through the driver (the store floor).

Two kinds of reads: finished tasks (a terminal task never changes, so each
server process keeps the ones it has read in memory) and running tasks (read
from the store every time, as a client polling for progress does).

    .venv/bin/python -m bench.get_task [--tasks 100000] [--seconds 10] [--connections 32] [--rounds 3]
        [--compare-metrics] [--store sqlite|postgres]

--compare-metrics adds a second server process with `--no-metrics` beside the
first, in the same rounds: the cost of the Prometheus counts, as the ratio of
the two.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import (
    PG_BASE,
    ROOT,
    Load,
    envoy,
    free_port,
    pg_database,
    process,
    seed,
    server,
    wait_grpc_healthy,
    wrk,
)


def lua_paths(path: Path, urls: list[str]) -> Path:
    body = ",\n".join(json.dumps(u) for u in urls)
    path.write_text(
        "local paths = {\n" + body + "\n}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  return wrk.format('GET', paths[(i % #paths) + 1])\n"
        "end\n"
    )
    return path


def summary(loads: list[Load]) -> tuple[float, float, float, int]:
    return (
        statistics.median(x.requests_per_s for x in loads),
        statistics.median(x.p50_ms for x in loads),
        statistics.median(x.p99_ms for x in loads),
        sum(x.errors for x in loads),
    )


def ratio(runs: list[Load], floors: list[Load]) -> str:
    """Per round (each against its floor in the same round): the median, with the min and max."""
    each = sorted(t.requests_per_s / f.requests_per_s for f, t in zip(floors, runs, strict=True))
    return f"{statistics.median(each):.2f} ({each[0]:.2f}-{each[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor / tasktrail runs")
    parser.add_argument("--compare-metrics", action="store_true", help="also a server with --no-metrics")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=PG_BASE, help="the PostgreSQL server for --store postgres")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tasktrail-bench-")))
        if args.store == "postgres":
            url = stack.enter_context(pg_database(args.postgres))
        else:
            url = f"sqlite:///{work / 'tasktrail.db'}"
        print(f"seeding {args.tasks:,} tasks (1 in 10 running) ...", file=sys.stderr)
        picked = seed(url, databases=100, per_database=args.tasks // 100, running_every=10)
        random.Random(1).shuffle(picked)
        finished = lua_paths(work / "finished.lua", [f"/v1/databases/{d}/tasks/{t}" for d, t, r in picked if not r])
        running = lua_paths(work / "running.lua", [f"/v1/databases/{d}/tasks/{t}" for d, t, r in picked if r])
        pages = lua_paths(  # a page of 20, newest first: after a random task's cursor, or the first page
            work / "pages.lua",
            [
                f"/v1/databases/{d}/tasks?limit=20&sort_order=desc" + (f"&after_task_id={t}" if i % 10 else "")
                for i, (d, t, _) in enumerate(picked[:20_000])
            ],
        )

        floor_port, store_floor_port = free_port(), free_port()
        floor_server = str(ROOT / "bench" / "floor_server.py")
        stack.enter_context(process([sys.executable, floor_server, str(floor_port)], work / "floor.log"))
        stack.enter_context(
            process([sys.executable, floor_server, str(store_floor_port), "--store", url], work / "store-floor.log")
        )
        tt = stack.enter_context(server(url, work))
        wait_grpc_healthy(f"127.0.0.1:{floor_port}")
        wait_grpc_healthy(f"127.0.0.1:{store_floor_port}")
        floor_edge = stack.enter_context(envoy(work, [floor_port], "floor"))
        store_edge = stack.enter_context(envoy(work, [store_floor_port], "store-floor"))
        tt_edge = stack.enter_context(envoy(work, [tt.port], "tt"))
        targets = {
            "floor": (floor_edge.rest, finished),
            "store floor": (store_edge.rest, running),
            "finished": (tt_edge.rest, finished),
            "running": (tt_edge.rest, running),
            "page floor": (store_edge.rest, pages),
            "pages": (tt_edge.rest, pages),
        }
        if args.compare_metrics:
            bare = stack.enter_context(server(url, work, "bare", "--no-metrics"))
            bare_edge = stack.enter_context(envoy(work, [bare.port], "bare"))
            targets["finished, no metrics"] = (bare_edge.rest, finished)
            targets["running, no metrics"] = (bare_edge.rest, running)
        runs: dict[str, list[Load]] = {name: [] for name in targets}
        for url_, script in targets.values():  # warm up (the finished tasks enter memory here)
            wrk(url_, connections=args.connections, seconds=3, script=script)
        order = list(targets.items())
        for _ in range(args.rounds):  # alternate, so that drift hits every variant alike
            for name, (url_, script) in order:
                runs[name].append(wrk(url_, connections=args.connections, seconds=args.seconds, script=script))
            order.reverse()  # and no variant always runs right after another

    floor, store_floor = summary(runs["floor"]), summary(runs["store floor"])
    where = "PostgreSQL" if args.store == "postgres" else "SQLite"
    print(
        f"GET one task through Envoy: {args.tasks:,} tasks in {where}, one server process, "
        f"{args.connections} connections, {args.rounds} rounds x {args.seconds} s"
    )
    print(f"  {'':26} {'req/s':>8} {'vs constant':>17} {'vs its floor':>17} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    labels = {
        "floor": "floor (constant task)",
        "store floor": "store floor (point read)",
        "finished": "finished tasks",
        "running": "running tasks",
        "page floor": "page floor (page read)",
        "pages": "list pages of 20",
    }
    for name in runs:
        rps, p50, p99, errors = summary(runs[name])
        label = labels.get(name, name)
        own_floor = "page floor" if name in ("pages", "page floor") else "store floor"
        vs_constant, vs_store = ratio(runs[name], runs["floor"]), ratio(runs[name], runs[own_floor])
        print(f"  {label:26} {rps:8.0f} {vs_constant:>17} {vs_store:>17} {p50:7.2f} {p99:7.2f} {errors:6d}")
    print(
        f"  (floors' medians: constant {floor[0]:.0f} req/s, store {store_floor[0]:.0f} req/s; "
        "ratio = tasktrail / floor per round: median (min-max); a page's floor is the page read)"
    )
    for kind in ("finished", "running"):
        if f"{kind}, no metrics" in runs:
            with_, without = runs[kind], runs[f"{kind}, no metrics"]
            cost = statistics.median(
                1 - a.requests_per_s / b.requests_per_s for a, b in zip(with_, without, strict=True)
            )
            print(
                f"  metrics cost, {kind} tasks: {cost * 100:+.1f} % of the throughput without them (per round, median)"
            )


if __name__ == "__main__":
    main()
