from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.core.ids import (
    IdGenerator,
    ids_after,
    is_canonical_uuid,
    next_id_after,
    parse_uuid,
    uuid_time_us,
)


def test_generated_ids_are_canonical_v7_and_increase() -> None:
    gen = IdGenerator()
    ids = [gen.new(1_700_000_000_000) for _ in range(2000)]  # one millisecond: the counter carries order
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for i in ids[:50]:
        assert is_canonical_uuid(i)
        u = uuid.UUID(i)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122


@given(st.integers(min_value=0, max_value=(1 << 128) - 2), st.integers(min_value=0, max_value=(1 << 48) - 1))
def test_next_id_after_is_always_greater(prev: int, now_ms: int) -> None:
    previous = str(uuid.UUID(int=prev))
    assert next_id_after(previous, now_ms) > previous


def test_clock_going_back_keeps_order() -> None:
    first = next_id_after(None, 2_000_000_000_000)
    second = next_id_after(first, 1_000_000_000_000)
    assert second > first
    assert uuid.UUID(second).version == 7


def test_time_inside_uuids() -> None:
    gen = IdGenerator()
    assert uuid_time_us(parse_uuid(gen.new(1_700_000_000_123))) == 1_700_000_000_123_000
    # The v1 UUID of the pgEdge documentation: 2025-07-10.
    v1 = uuid.UUID("404ecbe0-5cda-11f0-900b-a74a79e3bdba")
    expected = (v1.time - 0x01B21DD213814000) // 10
    assert uuid_time_us(v1.int) == expected
    assert 1_752_000_000_000_000 < expected < 1_753_000_000_000_000
    assert uuid_time_us(uuid.uuid4().int) is None


@given(st.integers(min_value=0, max_value=(1 << 127)), st.integers(min_value=1, max_value=300))
def test_ids_after_increase_from_any_previous(prev: int, count: int) -> None:
    previous = str(uuid.UUID(int=prev))
    ids = ids_after(previous, 1_800_000_000_000, count)
    assert len(ids) == count
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    assert ids[0] > previous


@pytest.mark.parametrize(
    "previous",
    ["ffffffff-fffe-7fff-bfff-ffffffffffff", "ffffffff-fffe-4fff-bfff-ffffffffffff",
     "ffffffff-ffff-7fff-bfff-fffffffffff0", "fffffffe-ffff-ffff-ffff-fffffffffff0"],
)  # fmt: skip
def test_ids_after_any_id_near_the_top_stay_canonical_and_increasing(previous: str) -> None:
    ids = ids_after(previous, 1_800_000_000_000, 1000)
    assert all(len(i) == 36 and is_canonical_uuid(i) for i in ids)
    assert ids == sorted(ids)
    assert ids[0] > previous
    assert len(set(ids)) == len(ids)
