"""Ids: UUIDv7 generation, and what a UUID says about time.

Task and log-entry ids are UUIDv7 in canonical lower-case form, so that their
string order is their numeric order and, for ids of one generator, their
creation order.
"""

from __future__ import annotations

import os
import re
import threading
import time

_HEX36 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX = (1 << 128) - 1
# Caller-supplied ids stay below this: the 48-bit time of a v7 below its last
# millisecond, every other UUID at least 2^80 below the last one. Allocation
# after any id under it always finds canonical, increasing ids (a v7 steps into
# the next millisecond at most; another UUID has 2^80 values to step through).
ROOM = ((1 << 48) - 1) << 80
# Between the Gregorian epoch (1582-10-15) of UUID v1/v6 and the Unix epoch, in 100 ns.
_GREGORIAN_OFFSET = 0x01B21DD213814000


def format_uuid(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_uuid(text: str) -> int:
    """The 128-bit value of a canonical (36-character) UUID; ValueError otherwise."""
    if not _HEX36.fullmatch(text.lower()):
        raise ValueError(f"not a canonical UUID: {text!r}")
    return int(text.replace("-", ""), 16)


def is_canonical_uuid(text: str) -> bool:
    return _HEX36.fullmatch(text) is not None


def _v7(ms: int, rand74: int) -> int:
    rand_a = rand74 >> 62
    rand_b = rand74 & ((1 << 62) - 1)
    return (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b


def _rand74(value: int) -> int:
    return (((value >> 64) & 0xFFF) << 62) | (value & ((1 << 62) - 1))


def uuid7_int(ms: int) -> int:
    return _v7(ms, int.from_bytes(os.urandom(10), "big") >> 6)


def next_id_after(previous: str | None, now_ms: int) -> str:
    """A UUIDv7 for `now_ms` that is greater than `previous`.

    When the clock has not moved past `previous` (the same millisecond, a clock
    step back, or an imported id from the future), the id continues from
    `previous` with a small random increment, so the order still holds.
    """
    candidate = uuid7_int(now_ms)
    if previous is None:
        return format_uuid(candidate)
    prev = parse_uuid(previous)
    if candidate > prev:
        return format_uuid(candidate)
    return format_uuid(_step(prev, int.from_bytes(os.urandom(2), "big")))


def _is_v7(value: int) -> bool:
    return (value >> 76) & 0xF == 7 and (value >> 62) & 0b11 == 0b10


def _step(value: int, noise: int) -> int:
    """The next id after `value`: a v7 steps its 74 random bits by 1 + 12 bits of
    `noise`, carrying into the time; any other UUID is followed by the next
    128-bit value, which keeps the order."""
    if _is_v7(value):
        rand = _rand74(value) + 1 + (noise & 0xFFF)
        if rand < 1 << 74:
            return _v7(value >> 80, rand)
        if (value >> 80) + 1 < 1 << 48:
            return _v7((value >> 80) + 1, rand & ((1 << 74) - 1))
        # No millisecond after the last one: the next 128-bit value keeps the order.
    if value >= _MAX:
        raise ValueError("no UUID is greater than ffffffff-ffff-ffff-ffff-ffffffffffff")
    return value + 1


def ids_after(previous: str | None, now_ms: int, count: int) -> list[str]:
    """`count` increasing ids after `previous`, as next_id_after makes them, in one go."""
    first = next_id_after(previous, now_ms)
    if count <= 1:
        return [first]
    value = parse_uuid(first)
    out = [first]
    steps = os.urandom(count * 2)
    for i in range(1, count):
        value = _step(value, (steps[2 * i] << 8) | steps[2 * i + 1])
        out.append(format_uuid(value))
    return out


class IdGenerator:
    """Monotonic UUIDv7s for one process: each id is greater than the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: str | None = None

    def new(self, now_ms: int | None = None) -> str:
        with self._lock:
            ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
            self._last = next_id_after(self._last, ms)
            return self._last


def uuid_time_us(value: int) -> int | None:
    """The time inside a time-based UUID (v1, v6, v7), in µs since the Unix epoch."""
    version = (value >> 76) & 0xF
    if version == 7:
        return (value >> 80) * 1000
    if version == 1:
        time_low = value >> 96
        time_mid = (value >> 80) & 0xFFFF
        time_hi = (value >> 64) & 0x0FFF
        ticks = (time_hi << 48) | (time_mid << 32) | time_low
        return (ticks - _GREGORIAN_OFFSET) // 10
    if version == 6:
        ticks = ((value >> 68) << 12) | ((value >> 64) & 0x0FFF)
        return (ticks - _GREGORIAN_OFFSET) // 10
    return None
