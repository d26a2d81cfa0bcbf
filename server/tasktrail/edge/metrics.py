"""One metrics address for the whole `up`: every server process serves its own
counts on a port it names in a file of the metrics directory; this collector
reads each at scrape time and gives them all, each sample labelled with its
`process` (server-0, server-1, …, writer). Prometheus sums across processes
with `sum by (…)`; a process that was restarted starts its counts again, which
Prometheus's rate() takes as the reset it is."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

SCRAPE_TIMEOUT = 2.0


class Processes(Collector):
    """The families of every process that named its port in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for port_file in sorted(self.directory.glob("*.port")):
            process = port_file.stem
            try:
                port = int(port_file.read_text())
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT) as reply:
                    text = reply.read().decode()
            except (OSError, ValueError):
                continue  # restarting, or gone: its counts come back with it
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    labels = {**sample.labels, "process": process}
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        yield from merged.values()


def serve(host: str, port: int, directory: Path) -> None:
    """Serve every process's counts at host:port/metrics, from a thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Processes(directory))
    start_http_server(port, addr=host, registry=registry)
