from __future__ import annotations

import pytest

from tasktrail.api import HttpError
from tasktrail.api.dialects.goa import Validation, designed, framework, go_quote, go_uuid_parse


def test_designed_error() -> None:
    err = designed("not_found", "no task found with the given ID")
    assert err.status == 404
    assert err.body == {"name": "not_found", "message": "no task found with the given ID"}
    assert err.headers == (("goa-error", "not_found"),)


def test_framework_error_shape() -> None:
    err = framework("invalid_format", "x")
    assert list(err.body) == ["name", "id", "message", "temporary", "timeout", "fault"]
    assert len(err.body["id"]) == 8
    assert framework("invalid_format", "x").body["id"] != err.body["id"]


def test_validation_merges_like_goa() -> None:
    v = Validation()
    v.check()  # nothing collected: no error
    assert v.integer("limit", "12") == 12
    assert v.integer("limit", "-3") == -3
    assert v.integer("limit", "+4") == 4
    assert v.integer("limit", "9223372036854775807") == 2**63 - 1
    assert v.integer("limit", "9223372036854775808") is None
    assert v.integer("limit", "1_000") is None
    assert v.integer("limit", "5\n") is None
    v.max_length("database_id", "é" * 37, 36)
    with pytest.raises(HttpError) as err:
        v.check()
    assert err.value.body["name"] == "invalid_field_type"
    assert err.value.body["message"] == (
        'invalid value "9223372036854775808" for "limit", must be a integer; '
        'invalid value "1_000" for "limit", must be a integer; '
        'invalid value "5\\n" for "limit", must be a integer; '
        f'length of database_id must be lesser or equal than 36 but got value "{"é" * 37}" (len=37)'
    )


def test_uuid_formats() -> None:
    v = Validation()
    assert v.uuid("task_id", "{D3CD2FAB-4B1F-4EB9-B614-181C10B07ACD}") == "d3cd2fab-4b1f-4eb9-b614-181c10b07acd"
    assert v.uuid("task_id", "d3cd2fab-4b1f-4eb9-3614-181c10b07acd") is None  # NCS variant
    with pytest.raises(HttpError) as err:
        v.check()
    assert err.value.body["message"] == (
        'task_id must be formatted as a uuid but got value "d3cd2fab-4b1f-4eb9-3614-181c10b07acd", '
        "uuid: expected RFC4122 format, but got Reserved"
    )


def test_enum() -> None:
    v = Validation()
    assert v.enum("scope", "host", ("database", "host"))
    assert not v.enum("scope", "HOST", ("database", "host"))
    with pytest.raises(HttpError) as err:
        v.check()
    assert err.value.body["message"] == 'value of scope must be one of "database", "host" but got value "HOST"'


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
