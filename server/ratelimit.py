"""Request rate limits, per key, in fixed windows (as Redis Cloud's: 400
requests a minute per account key, counted in the window the minute is in)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    # Seconds until the window ends (when refused: how long to wait).
    retry_after: int


class FixedWindow:
    """In one process. Several processes each count their own share; a shared
    counter in the store is the way past that (docs/operating.md)."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window number, requests in it)

    def hit(self, key: str) -> Verdict:
        now = self.clock()
        current = int(now // self.window)
        number, count = self._counts.get(key, (current, 0))
        if number != current:
            number, count = current, 0
            if len(self._counts) > 100_000:  # forget windows long gone
                self._counts = {k: v for k, v in self._counts.items() if v[0] == current}
        retry_after = max(1, int((current + 1) * self.window - now + 0.999))
        if count >= self.limit:
            return Verdict(False, 0, retry_after)
        self._counts[key] = (number, count + 1)
        return Verdict(True, self.limit - count - 1, retry_after)
