"""The curl examples of README.md and docs/*.md run against the real stack:
each answers JSON, and the statuses the docs show."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, block in enumerate(BLOCK.findall(doc.read_text())):
            if "curl" in block and "localhost:3000" in block:
                found.append((f"{doc.name}#{i}", block))
    return found


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("docs")))
    yield running
    stop_stack(running)


def run(stack: Stack, script: str) -> str:
    script = script.replace("http://localhost:3000", stack.rest)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_docs_have_examples() -> None:
    assert len(blocks()) >= 6


@pytest.mark.parametrize(("name", "block"), blocks(), ids=[n for n, _ in blocks()])
def test_example(docs_stack: Stack, name: str, block: str) -> None:
    lines = [line for line in block.splitlines() if line.strip()]
    if all(line.startswith("curl ") for line in lines):
        for line in lines:
            out = run(docs_stack, line.replace("curl ", "curl -sS -w '\\n%{http_code}' ", 1))
            if " -i " in line:
                head, _, rest = out.partition("\n\n")  # text mode turned CRLF into LF
                assert head.startswith("HTTP/1.1 "), out
                out = rest
            body, _, code = out.rpartition("\n")
            assert json.loads(body) is not None, (line, out)
            assert int(code) < 500
    else:  # a script: it runs to the end, and its last answer is JSON
        out = run(docs_stack, block)
        assert json.loads(out.strip().splitlines()[-1])
