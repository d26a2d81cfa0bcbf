"""Background work of every server process: ending tasks whose worker was lost,
and deleting tasks whose retention has ended.

Several processes may run it at once: each step re-checks under the task's
lock (a lease renewed meanwhile is left alone, a task is ended or deleted
once), so the work is done once whoever does it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tasktrail.core import errors
from tasktrail.core.tasks import TaskCore

log = logging.getLogger(__name__)
LEASE_BATCH = 100
LEASE_ROUNDS = 10


@dataclass(frozen=True, slots=True)
class Housekeeping:
    lease_check_interval: float = 1.0
    sweep_interval: float = 30.0
    sweep_batch: int = 500


async def _every(interval: float, what: str, work: Callable[[], Awaitable[None]]) -> None:
    """`work` every `interval` seconds, for ever. A store that is away says so
    itself, and the next tick looks again; any other failure is logged; neither
    stops the loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except errors.Unavailable:
            continue
        except Exception:
            log.exception("%s failed", what)


async def reap_leases(core: TaskCore, interval: float) -> None:
    async def reap() -> None:
        for _ in range(LEASE_ROUNDS):  # a full batch: look again at once, a bounded number of times
            if await core.expire_leases(LEASE_BATCH) < LEASE_BATCH:
                return

    await _every(interval, "lease check", reap)


async def sweep(core: TaskCore, interval: float, batch: int) -> None:
    async def sweep_once() -> None:
        total = 0
        while (deleted := await core.sweep(batch)) > 0:
            total += deleted
            await asyncio.sleep(0)  # bounded batches: let requests through between them
        if total:
            log.info("swept %d expired tasks", total)

    await _every(interval, "retention sweep", sweep_once)
