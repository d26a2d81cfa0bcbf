"""Options every printing command shares."""

from __future__ import annotations

import argparse

OUTPUTS = ("table", "json")


def add_output(p: argparse.ArgumentParser) -> None:
    """`-o/--output table|json` (table: for people; json: one JSON document, or
    one a line for logs, for scripts); `--json` is kept as its short form."""
    p.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="table for people, json for scripts")
    p.add_argument("--json", dest="output", action="store_const", const="json", help="the same as --output json")
