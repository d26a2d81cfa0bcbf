"""Settings. Every one has a command-line flag and a TASKTRAIL_* environment
variable; durations are settings too, so tests shrink them instead of waiting."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tasktrail.core import Limits, Timing
from tasktrail.dialects.cloud import CloudSettings
from tasktrail.events import CHANGE_POLL_INTERVAL
from tasktrail.follow import FollowSettings
from tasktrail.housekeeping import Housekeeping
from tasktrail.model import Retention
from tasktrail.store.engine import StoreOptions


def env(name: str, default: str) -> str:
    return os.environ.get(f"TASKTRAIL_{name}", default)


def env_int(name: str, default: int) -> int:
    return int(env(name, str(default)))


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'tasktrail.db').resolve()}"


@dataclass(frozen=True)
class ServerSettings:
    """What one `tasktrail serve` process needs."""

    database_url: str
    store: StoreOptions = field(default_factory=StoreOptions)
    host: str = "127.0.0.1"
    port: int = 50061
    limits: Limits = field(default_factory=Limits)
    timing: Timing = field(default_factory=Timing)
    retention: Retention = field(default_factory=Retention)
    housekeeping: Housekeeping = field(default_factory=Housekeeping)
    follow: FollowSettings = field(default_factory=FollowSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    # Tokens on the gRPC API (always, unless a test turns them off), and on the control-plane REST port.
    auth: bool = True
    controlplane_auth: bool = False
    # How often a process looks for changes made by other processes.
    change_poll_interval: float = CHANGE_POLL_INTERVAL
    # Seconds in-flight calls get to finish on SIGTERM.
    shutdown_grace: float = 10.0
