"""`tasktrail completion bash|zsh|tcsh`: a completion script for the shell,
written by shtab from the whole parser (every command's options and choices).

    source <(tasktrail completion bash)        # this shell
    tasktrail completion zsh > ~/.zfunc/_tasktrail   # zsh, for good
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a completion script; e.g. `source <(tasktrail completion bash)`.",
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from tasktrail.cli.main import build_parser

    print(shtab.complete(build_parser(every=True), shell=args.shell))
    return 0
