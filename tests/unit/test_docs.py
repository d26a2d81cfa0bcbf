"""What the documentation states as fact holds: the files it cites exist, and
the settings it quotes are the code's."""

from __future__ import annotations

import re
from pathlib import Path

from tasktrail.core.changes import CHANGE_POLL_INTERVAL

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_document_cited_exists() -> None:
    missing = []
    for doc in DOCS:
        text = re.sub(r"https?://\S+", "", doc.read_text())  # another site's pages are not ours to check
        for cited in set(re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b", text)):
            if not any((base / cited).exists() for base in (ROOT, doc.parent)):
                missing.append(f"{doc.name}: {cited}")
    assert not missing


def test_the_change_poll_interval_quoted_is_the_default() -> None:
    default = f"{CHANGE_POLL_INTERVAL * 1000:g} ms"
    quoted = []
    for doc in DOCS:
        for match in re.finditer(r"--change-poll-interval`[^.|]*?\b(\d+(?:\.\d+)?) ms", doc.read_text()):
            quoted.append((doc.name, f"{match.group(1)} ms"))
    assert quoted
    assert [q for q in quoted if q[1] != default] == []


def test_passwords_are_said_to_be_kept_as_they_are() -> None:
    """argon2id (auth/users.py); scrypt hashes are only read, and replaced at the next login."""
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        assert not re.search(r"[Pp]asswords are (stored|kept) as salted scrypt", text), doc.name


def test_every_block_is_an_example_a_test_runs() -> None:
    """Each fenced block names its language, and each is claimed by a runner of
    tests/e2e/test_doc_examples.py (commands run, data parses, text is shown)."""
    from tests.support import docs

    unclaimed = [f"{b.name} ({b.language or 'no language'})" for b in docs.blocks() if b.kind == "unknown"]
    assert not unclaimed
    assert {b.language for b in docs.blocks()} <= docs.LANGUAGES
    assert [b.text for b in docs.blocks() if b.kind == "not run"] == ["make test\n"]


def test_every_cli_command_has_an_example() -> None:
    """docs/sdk-and-cli.md shows every command and subcommand of the CLI in a block the tests run."""
    import argparse

    from tasktrail.cli.main import build_parser
    from tests.support import docs

    def names(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += names(sub, f"{prefix} {name}") or [f"{prefix} {name}"]
        return found

    ran = " ".join(
        b.text for b in docs.blocks() if b.doc == "sdk-and-cli.md" and b.kind in ("cli", "service", "transcript")
    )
    ran = " ".join(ran.replace(".venv/bin/tasktrail", "tasktrail").split())
    missing = [c for c in names(build_parser(every=True), "tasktrail") if c + " " not in ran]
    assert not missing
