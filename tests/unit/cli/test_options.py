"""Settings: each read once, from its flag or its environment variable, with its type."""

from __future__ import annotations

import argparse

import pytest

from tasktrail.cli import options


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("TRUE", True), ("on", True), ("1", True),
                                             ("no", False), ("False", False), ("off", False), ("0", False),
                                             ("", False)])  # fmt: skip
def test_booleans_are_strict(text: str, value: bool) -> None:
    assert options.boolean(text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "nope", "yess"])
def test_an_unknown_boolean_is_an_error_not_true(text: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        options.boolean(text)


def parse(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> argparse.Namespace:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    options.add_up_options(parser)
    return parser.parse_args(argv)


def test_the_environment_sets_a_default_and_a_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(monkeypatch, {"TASKTRAIL_WRITE_LANE": "no", "TASKTRAIL_REPLICAS": "3"})
    assert (args.write_lane, args.replicas) == (False, 3)
    args = parse(monkeypatch, {"TASKTRAIL_WRITE_LANE": "no"}, "--write-lane", "--replicas", "2")
    assert (args.write_lane, args.replicas) == (True, 2)
    assert parse(monkeypatch, {"TASKTRAIL_CONTROLPLANE_AUTH": "false"}).controlplane_auth is False


def test_a_bad_environment_value_stops_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="TASKTRAIL_CONTROLPLANE_AUTH='maybe'"):
        parse(monkeypatch, {"TASKTRAIL_CONTROLPLANE_AUTH": "maybe"})
    monkeypatch.delenv("TASKTRAIL_CONTROLPLANE_AUTH")
    with pytest.raises(SystemExit, match="TASKTRAIL_REPLICAS='three'"):
        parse(monkeypatch, {"TASKTRAIL_REPLICAS": "three"})


def test_defaults_come_from_the_settings_they_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasktrail.api.server import SERVER_PORT, SHUTDOWN_GRACE
    from tasktrail.edge.supervisor import UpSettings

    args = parse(monkeypatch, {})
    up = options.up_settings(args)
    assert up.server_port == SERVER_PORT == UpSettings.server_port
    assert up.shutdown_grace == SHUTDOWN_GRACE
    assert up.rest_port == UpSettings.rest_port


def test_server_flags_pass_through_up_to_every_server(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(monkeypatch, {}, "--controlplane-auth", "--max-page-size", "7", "--retention", "crdb=none")
    argv = options.server_argv(args)
    parser = argparse.ArgumentParser()
    options.add_server_options(parser)
    options.add(parser, options.LISTEN)
    again = parser.parse_args(argv)
    assert (again.controlplane_auth, again.max_page_size, again.retention) == (True, 7, [("crdb", None)])
    assert options.server_argv(again) == argv
