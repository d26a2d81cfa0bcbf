"""List-page latency at 1,000 and at 1,000,000 tasks: a keyset page costs the
same whatever the store's size.

Sequential requests on one keep-alive connection through Envoy:
GET /v1/databases/{id}/tasks?limit=20 with a random cursor and order, and the
first page of each database.

    .venv/bin/python -m bench.list_pages [--sizes 1000,1000000] [--requests 3000]
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from bench.common import envoy, seed, server

DATABASES = 10


def measure(rest: str, picked: list[tuple[str, str, bool]], requests: int) -> list[float]:
    parsed = urllib.parse.urlsplit(rest)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=10)
    rng = random.Random(7)
    samples: list[float] = []
    for i in range(requests):
        db, task_id, _ = rng.choice(picked)
        query = {"limit": "20", "sort_order": rng.choice(["asc", "desc"])}
        if i % 10:
            query["after_task_id"] = task_id
        path = f"/v1/databases/{db}/tasks?{urllib.parse.urlencode(query)}"
        start = time.perf_counter()
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
        samples.append((time.perf_counter() - start) * 1000)
        assert reply.status == 200, body
    conn.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[float]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="tasktrail-bench-") as tmp:
            work = Path(tmp)
            url = f"sqlite:///{work / 'tasktrail.db'}"
            started = time.monotonic()
            picked = seed(url, databases=DATABASES, per_database=size // DATABASES)
            print(f"seeded {size:,} tasks in {time.monotonic() - started:.0f} s", file=sys.stderr)
            with server(url, work) as tt, envoy(work, [tt.port], "list") as edge:
                measure(edge.rest, picked, 300)  # warm up
                results[size] = measure(edge.rest, picked, args.requests)
    print(f"List page (limit=20, random cursor and order) through Envoy, {args.requests} sequential requests")
    print(f"  {'tasks':>10} {'per db':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}")
    for size, samples in results.items():
        print(
            f"  {size:>10,} {size // DATABASES:>8,} {statistics.median(samples):7.3f} "
            f"{percentile(samples, 0.9):7.3f} {percentile(samples, 0.99):7.3f}"
        )
    if len(sizes) >= 2:
        small, large = results[sizes[0]], results[sizes[-1]]
        print(
            f"  p50 ratio {sizes[-1]:,} / {sizes[0]:,}: {statistics.median(large) / statistics.median(small):.2f}  "
            f"p99 ratio: {percentile(large, 0.99) / percentile(small, 0.99):.2f}"
        )


if __name__ == "__main__":
    main()
