from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.ids import (
    IdGenerator,
    go_quote,
    go_uuid_parse,
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


@pytest.mark.parametrize(
    ("text", "canonical", "problem"),
    [
        ("abc", None, "invalid UUID length: 3"),
        ("D3CD2FAB-4B1F-4EB9-B614-181C10B07ACD", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd", None),
        ("d3cd2fab4b1f4eb9b614181c10b07acd", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd", None),
        ("{d3cd2fab-4b1f-4eb9-b614-181c10b07acd}", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd", None),
        ("urn:uuid:d3cd2fab-4b1f-4eb9-b614-181c10b07acd", "d3cd2fab-4b1f-4eb9-b614-181c10b07acd", None),
        ("urx:uuid:d3cd2fab-4b1f-4eb9-b614-181c10b07acd", None, 'invalid urn prefix: "urx:uuid:"'),
        ("d3cd2fab-4b1f-4eb9-b614-181c10b07acz", None, "invalid UUID format"),
        ("d3cd2fab+4b1f-4eb9-b614-181c10b07acd", None, "invalid UUID format"),
    ],
)
def test_go_uuid_parse(text: str, canonical: str | None, problem: str | None) -> None:
    assert go_uuid_parse(text) == (canonical, problem)


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\tnl\n\x00") == '"tab\\tnl\\n\\x00"'
    assert go_quote("héllo") == '"héllo"'


@given(st.integers(min_value=0, max_value=(1 << 127)), st.integers(min_value=1, max_value=300))
def test_ids_after_increase_from_any_previous(prev: int, count: int) -> None:
    previous = str(uuid.UUID(int=prev))
    ids = ids_after(previous, 1_800_000_000_000, count)
    assert len(ids) == count
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    assert ids[0] > previous
