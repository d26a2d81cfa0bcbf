"""What a server process counts, for Prometheus (prometheus-client).

Counted where the work is done (the servicer's endpoint wrapper, the store's
calls and commits, the log hub), not by an interceptor around every call. The
counts live in plain dictionaries, updated on the event loop's thread without
a lock (a request costs a few dictionary updates), and are read when
Prometheus scrapes, by a collector of prometheus-client's (`Counts`), from its
HTTP server's thread: a copy of a dictionary's items is atomic under the GIL.

A label that callers choose (a task's type) is bounded: past `MAX_VALUES`
distinct values it reads "other", so no caller can grow the series without end.

Under `tasktrail up` each server process serves its counts on a port of its
own, named in a file in the metrics directory, and `up` serves them all at
one address with a `process` label (edge/metrics.py).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tasktrail.core.ids import parse_uuid, uuid_time_us

# Off: every function here returns at once (`serve --no-metrics`, to measure their cost).
ENABLED = True
MAX_VALUES = 200
OTHER = "other"

LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Histogram:
    """Counts of observations per bucket (each bucket holds what is at most its bound), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class _Bounded:
    """At most MAX_VALUES distinct values of a label; the rest read OTHER."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= MAX_VALUES:
            return OTHER
        self.seen.add(value)
        return value


_types = _Bounded()
_counters: dict[str, dict[tuple[str, ...], float]] = {}
_histograms: dict[str, dict[tuple[str, ...], _Histogram]] = {}
_followers = 0

# name → (help, label names); a histogram's buckets.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tasktrail_requests": (
        "Calls answered (streams: when they open), by surface (native, controlplane, cloud, crdb), method and "
        "code (OK, a gRPC code's name, or a dialect's HTTP status).",
        ("surface", "method", "code"),
    ),
    "tasktrail_tasks_created": ("Tasks created, by scope and type.", ("scope", "type")),
    "tasktrail_tasks_ended": (
        "Tasks that reached a final status, by scope, type and status.",
        ("scope", "type", "status"),
    ),
    "tasktrail_log_entries": ("Log entries appended.", ()),
    "tasktrail_log_bytes": ("Characters of log messages appended.", ()),
    "tasktrail_follow_frames": ("Frames of entries sent to live tails.", ()),
    "tasktrail_store_failures": ("Store calls that failed, by answer.", ("reason",)),
    "tasktrail_lease_expiries": ("Tasks ended because their worker stopped heartbeating.", ()),
    "tasktrail_swept_tasks": ("Expired tasks deleted by the retention sweeper.", ()),
    "tasktrail_rate_limited": ("Calls refused by a request limit, by surface.", ("surface",)),
    "tasktrail_credential_failures": ("Credentials refused, by kind (token, keys, password).", ("kind",)),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "tasktrail_request_duration_seconds": (
        "Time to answer a unary call, by surface and method.",
        ("surface", "method"),
        LATENCY,
    ),
    "tasktrail_follow_lag_seconds": (
        "From an entry's append (the time in its id) to its frame leaving for a follower.",
        (),
        LAG,
    ),
    "tasktrail_store_duration_seconds": (
        "Time of a store call (read, snapshot, write: a whole transaction).",
        ("op",),
        LATENCY,
    ),
}


def _inc(name: str, labels: tuple[str, ...], amount: float = 1) -> None:
    counts = _counters.setdefault(name, {})
    counts[labels] = counts.get(labels, 0) + amount


def _observe(name: str, labels: tuple[str, ...], value: float) -> None:
    series = _histograms.setdefault(name, {})
    histogram = series.get(labels)
    if histogram is None:
        histogram = series[labels] = _Histogram(HISTOGRAMS[name][2])
    histogram.observe(value)


def request(surface: str, method: str, code: str, seconds: float | None) -> None:
    """A call answered (`seconds` None: a stream, counted but not timed)."""
    if not ENABLED:
        return
    _inc("tasktrail_requests", (surface, method, code))
    if seconds is not None:
        _observe("tasktrail_request_duration_seconds", (surface, method), seconds)


def task_created(scope: str, type: str) -> None:
    if ENABLED:
        _inc("tasktrail_tasks_created", (scope, _types(type)))


def task_ended(scope: str, type: str, status: str) -> None:
    if ENABLED:
        _inc("tasktrail_tasks_ended", (scope, _types(type), status))


def appended(entries: int, characters: int) -> None:
    if ENABLED:
        _inc("tasktrail_log_entries", (), entries)
        _inc("tasktrail_log_bytes", (), characters)


def follower(delta: int) -> None:
    global _followers
    if ENABLED:
        _followers += delta


def frame_sent(first_entry_id: str) -> None:
    """A frame of entries leaves for a follower: its lag, from its first entry's id."""
    if not ENABLED:
        return
    _inc("tasktrail_follow_frames", ())
    try:
        made = uuid_time_us(parse_uuid(first_entry_id))
    except ValueError:
        return
    if made is not None:
        _observe("tasktrail_follow_lag_seconds", (), max(0.0, time.time() - made / 1_000_000))


def store_call(op: str, seconds: float) -> None:
    if ENABLED:
        _observe("tasktrail_store_duration_seconds", (op,), seconds)


def store_failed(reason: str) -> None:
    if ENABLED:
        _inc("tasktrail_store_failures", (reason,))


def leases_expired(count: int) -> None:
    if ENABLED and count:
        _inc("tasktrail_lease_expiries", (), count)


def swept(count: int) -> None:
    if ENABLED and count:
        _inc("tasktrail_swept_tasks", (), count)


def rate_limited(surface: str) -> None:
    if ENABLED:
        _inc("tasktrail_rate_limited", (surface,))


def credential_failed(kind: str) -> None:
    if ENABLED:
        _inc("tasktrail_credential_failures", (kind,))


class Counts(Collector):
    """This process's counts, as Prometheus families, at each scrape."""

    def collect(self) -> Iterator[Metric]:
        for name, (help, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, help, labels=labels)
            for values, count in list(_counters.get(name, {}).items()):
                family.add_metric(values, count)
            yield family
        for name, (help, labels, _) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, help, labels=labels)
            for values, h in list(_histograms.get(name, {}).items()):
                histogram.add_metric(values, h.cumulative(), h.sum)
            yield histogram
        yield GaugeMetricFamily("tasktrail_followers", "Live log tails open.", value=_followers)


REGISTRY.register(Counts())


def serve(host: str, port: int, port_file: Path | None = None) -> int:
    """Serve this process's /metrics at host:port (0: any free port) from a
    thread; the port, also written to `port_file` for `up` to find."""
    server: Any
    server, _ = start_http_server(port, addr=host)
    bound = int(server.server_port)
    if port_file is not None:
        port_file.parent.mkdir(parents=True, exist_ok=True)
        partial = port_file.with_suffix(".tmp")
        partial.write_text(str(bound))
        partial.replace(port_file)
    return bound
