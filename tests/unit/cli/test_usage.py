"""A subcommand's mistake is told with that subcommand's usage, not the top-level one."""

from __future__ import annotations

import pytest

from tasktrail.cli import main


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main.main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (("tasks", "list", "--bogus"), "usage: tasktrail tasks list "),
        (("tasks", "get", "some-id", "extra"), "usage: tasktrail tasks get "),
        (("tasks", "cancel", "some-id", "--bogus"), "usage: tasktrail tasks cancel "),
        (("logs", "get", "some-id", "--bogus"), "usage: tasktrail logs get "),
        (("logs", "follow", "some-id", "--bogus"), "usage: tasktrail logs follow "),
        (("tokens", "create", "--name", "n", "--grant", "database", "--bogus"), "usage: tasktrail tokens create "),
        (("accounts", "create", "--name", "n", "--bogus"), "usage: tasktrail accounts create "),
        (("keys", "list", "--bogus"), "usage: tasktrail keys list "),
        (("users", "list", "--bogus"), "usage: tasktrail users list "),
        (("certs", "client", "name", "--bogus"), "usage: tasktrail certs client "),
    ],
)
def test_an_unknown_argument_shows_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], usage: str
) -> None:
    err = refused(capsys, *argv)
    assert err.startswith(usage), err
    assert err.splitlines()[-1].startswith(usage.removeprefix("usage: ").strip() + ": error: unrecognized arguments:")
    assert "COMMAND ..." not in err  # never the top-level usage


def test_a_direct_subcommand_shows_its_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused(capsys, "demo", "--bogus").startswith("usage: tasktrail demo ")


def test_tokens_create_offers_the_three_roles(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "tokens", "create", "--name", "n", "--grant", "database", "--role", "admin")
    assert "invalid choice: 'admin' (choose from 'reader', 'operator', 'writer')" in err
