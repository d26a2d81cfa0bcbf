"""Retry and timeout policies.

Small configuration objects, as in Google's python-api-core, so that no loop
of the client invents its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed call is tried again.

    A call that failed with one of `codes` is retried with exponential backoff
    (full jitter), until `deadline` seconds have passed since the first try.

    Attributes:
        initial: The first delay's ceiling, in seconds.
        maximum: The largest delay's ceiling, in seconds.
        multiplier: How much the ceiling grows after each try.
        deadline: Seconds after the first try past which no retry starts.
        codes: The status codes worth another try.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    deadline: float = 60.0
    # Every call of the SDK is safe to repeat (reads; writes carry their idempotency
    # key: request_id, lease_id, append_id), so a lost answer is tried again too.
    codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
    )

    def retries(self, code: grpc.StatusCode | None) -> bool:
        """Whether a call that failed with `code` is worth another try."""
        return code in self.codes

    def delays(self) -> Iterator[float]:
        """Sleeps between attempts, without end: the caller stops at the deadline."""
        ceiling = self.initial
        while True:
            yield random.uniform(0, ceiling)
            ceiling = min(ceiling * self.multiplier, self.maximum)


NO_RETRY = RetryPolicy(deadline=0.0, codes=frozenset())


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt deadlines, in seconds."""

    call: float = 10.0
    # One WaitTask call; the server caps it (60 s by default), the client calls again until the end.
    wait: float = 30.0


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """How a worker holds its task: the lease, how often it renews it, how it batches log lines."""

    lease: float = 30.0
    # Renew every `heartbeat` seconds; a third of the lease when unset.
    heartbeat: float | None = None
    # Log lines go out every `flush_interval` seconds, or as soon as `batch_size` are waiting.
    flush_interval: float = 0.2
    batch_size: int = 100

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between two renewals of the lease."""
        return self.heartbeat if self.heartbeat is not None else self.lease / 3
