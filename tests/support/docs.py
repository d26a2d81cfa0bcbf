"""The fenced blocks of README.md and docs/*.md, each with the runner that
runs it in the tests: an example nobody runs is an example that rots.

Every block names its language. Commands (`sh`, `console`, `python`) are run
by tests/e2e/test_doc_examples.py, data (`json`, `yaml`) is parsed, and `text`
is output or a drawing. tests/unit/test_docs.py checks that no block falls
outside these kinds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LANGUAGES = {"sh", "console", "python", "json", "yaml", "text", "proto"}
# The one command no test runs: it is the command that runs the tests.
NOT_RUN = {"make test\n"}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def kind(self) -> str:
        """Which runner runs it (tests/e2e/test_doc_examples.py)."""
        text, language = self.text, self.language
        if language == "sh":
            if text in NOT_RUN:
                return "not run"
            if re.search(r"(^|\s)(\.venv/bin/)?tasktrail (up|serve|migrate)\b|^make run", text, re.M):
                return "service"
            if "/v1/openapi.json" in text:
                return "openapi"
            if "localhost:9443" in text:
                return "crdb"
            if "https://$HOST/tasks" in text:
                return "cloud"
            if "localhost:3000" in text and "curl" in text:
                return "controlplane"
            if re.search(r"(^|[\s(|])(\.venv/bin/)?tasktrail ", text, re.M):
                return "cli"
            if text.startswith("buf curl"):
                return "grpc"
            if text.startswith(".venv/bin/python -m bench."):
                return "bench"
        if language == "console" and text.startswith("$ "):
            return "transcript"
        if language == "python":
            return "python"
        if language in ("json", "yaml", "text", "proto"):
            return language
        return "unknown"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(doc.name, line, match.group(1), match.group(2)))
    return found


def of_kind(kind: str) -> list[Block]:
    return [b for b in blocks() if b.kind == kind]
