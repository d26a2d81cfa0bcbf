"""google.protobuf.Struct as plain JSON values."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON; whole numbers come back as ints (Struct holds doubles)."""
    return _ints(json_format.MessageToDict(value))  # type: ignore[no-any-return]


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value
