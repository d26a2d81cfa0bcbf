"""Options every printing command shares, and the parser of a command's subcommands."""

from __future__ import annotations

import argparse
from typing import Any

OUTPUTS = ("table", "json")


class StrictParser(argparse.ArgumentParser):
    """A subcommand's parser (`tasks list`, `tokens create`…): an argument it does
    not know is its own error, told with its own usage. (argparse hands unknown
    arguments up to the top-level parser, which would print `tasktrail`'s usage.)
    Pass it as `add_subparsers(parser_class=StrictParser)`."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def add_output(p: argparse.ArgumentParser) -> None:
    """`-o/--output table|json` (table: for people; json: one JSON document, or
    one a line for logs, for scripts); `--json` is kept as its short form."""
    p.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table for people, json for scripts")
    p.add_argument("--json", dest="output", action="store_const", const="json", help="the same as --output json")
