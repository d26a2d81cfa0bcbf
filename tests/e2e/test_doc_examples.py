"""The curl examples of README.md and docs/*.md run against the real stack:
each answers JSON, and the statuses the docs show."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import ROOT, Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def blocks_with(marker: str) -> list[tuple[str, str]]:
    """The docs' sh blocks that hold `marker`, named <doc>#<index>."""
    found = []
    for doc in DOCS:
        for i, block in enumerate(BLOCK.findall(doc.read_text())):
            if marker in block:
                found.append((f"{doc.name}#{i}", block))
    return found


def blocks() -> list[tuple[str, str]]:
    """The control-plane API's curl commands."""
    return [(name, block) for name, block in blocks_with("localhost:3000") if "curl" in block]


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("docs")))
    yield running
    stop_stack(running)


def run(stack: Stack, script: str) -> str:
    script = script.replace("http://localhost:3000", stack.rest)
    script = re.sub(r"(?<=[\s'\"])data/", f"{stack.data_dir}/", script)  # the docs run from a checkout
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def cli_blocks() -> list[tuple[str, str, str]]:
    """Blocks that use the CLI (sh) or the SDK (python)."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for i, block in enumerate(re.findall(r"```sh\n(.*?)```", text, re.S)):
            if ".venv/bin/tasktrail" in block:
                found.append((f"{doc.name}#sh{i}", "sh", block))
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            if "tasktrail.client" in block:
                found.append((f"{doc.name}#py{i}", "python", block))
    return found


def cloud_blocks() -> list[tuple[str, str]]:
    """The cloud API's curl commands, as Redis Cloud's documentation writes them."""
    return blocks_with("https://$HOST/tasks")


def crdb_blocks() -> list[tuple[str, str]]:
    """The enterprise API's curl commands (`curl -k -u …`)."""
    return blocks_with("localhost:9443")


def test_docs_have_examples() -> None:
    assert len(blocks()) >= 6
    assert len(cli_blocks()) >= 2
    assert len(cloud_blocks()) >= 2
    assert len(crdb_blocks()) >= 1
    assert len(blocks_with("/v1/openapi.json")) == 3


@pytest.mark.parametrize(("name", "block"), crdb_blocks(), ids=[n for n, _ in crdb_blocks()])
def test_crdb_example(docs_stack: Stack, tmp_path: Path, name: str, block: str) -> None:
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    for line in (x for x in block.splitlines() if x.startswith("curl ")):
        script = line.replace("https://localhost:9443", docs_stack.crdb).replace(
            "curl ", "curl -sS -w '\\n%{http_code}' ", 1
        )
        out = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=tmp_path,
        ).stdout
        body, _, code = out.rpartition("\n")
        assert code == "200", (name, line, out)
        assert json.loads(body) is not None


@pytest.mark.parametrize(("name", "block"), cloud_blocks(), ids=[n for n, _ in cloud_blocks()])
def test_cloud_example(docs_stack: Stack, tmp_path: Path, name: str, block: str) -> None:
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    cloud_host = docs_stack.cloud.removeprefix("https://")
    # What the reader did before: the development account's keys, HOST, the CA, a TASK_ID.
    setup = f"set -a; . data/dev-account.env; set +a; export HOST={cloud_host}/v1 CURL_CA_BUNDLE=data/tls/ca.pem\n"
    listed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", setup + 'curl -sS "https://$HOST/tasks" '
         '-H "x-api-key: $ACCOUNT_KEY" -H "x-api-secret-key: $SECRET_KEY"'],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    tasks = json.loads(listed)["tasks"]
    assert {t["status"] for t in tasks} >= {"received", "processing-in-progress", "processing-completed"}
    script = setup + f"export TASK_ID={tasks[0]['taskId']}\n" + block.replace("127.0.0.1:8443", cloud_host)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    ).stdout
    answer = json.loads(out)
    assert "tasks" in answer or answer["taskId"] == tasks[0]["taskId"], (name, answer)


@pytest.mark.parametrize(("name", "kind", "block"), cli_blocks(), ids=[n for n, _, _ in cli_blocks()])
def test_cli_and_sdk_example(docs_stack: Stack, tmp_path: Path, name: str, kind: str, block: str) -> None:
    # Run where a `make run` would be: ./data is the stack's data directory.
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    env = {
        **os.environ,
        "TASKTRAIL_TARGET": docs_stack.grpc_target,
        "TASKTRAIL_TOKEN": docs_stack.token,
        # The stack's store: ./data/tasktrail.db on SQLite, as after `make run`; PostgreSQL in that run.
        "TASKTRAIL_DATABASE_URL": docs_stack.database_url,
        "NO_COLOR": "1",
    }
    if kind == "sh":
        script = block.replace(".venv/bin/tasktrail", f"{sys.executable} -m tasktrail")
        script = script.replace("localhost:50051", docs_stack.grpc_target)
        argv = ["bash", "-euo", "pipefail", "-c", script]
    else:
        argv = [sys.executable, "-c", block]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert done.stdout
    if "TaskStatus(" in block:  # statuses print as words, never as the enum's numbers
        assert re.search(r"\b(pending|running|canceling|completed|failed|canceled)\b", done.stdout), done.stdout


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
            assert int(code) < 500
            if "text/event-stream" in line:
                assert all(x.split(":", 1)[0] in ("", "retry", "event", "id", "data") for x in body.splitlines())
            elif "/stream" in line:  # NDJSON: one document a line
                assert all(json.loads(x) is not None for x in body.splitlines()), (line, out)
            else:
                assert json.loads(body) is not None, (line, out)
    else:  # a script: it runs to the end, and its last answer is JSON
        out = run(docs_stack, block)
        assert json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "block"), blocks_with("/v1/openapi.json"), ids=[n for n, _ in blocks_with("/v1/openapi.json")]
)
def test_openapi_example(docs_stack: Stack, tmp_path: Path, name: str, block: str) -> None:
    """Each port's description, fetched as the docs show."""
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    for origin, live in (
        ("http://localhost:3000", docs_stack.rest),
        ("https://localhost:8443", docs_stack.cloud),
        ("https://localhost:9443", docs_stack.crdb),
    ):
        block = block.replace(origin, live)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    ).stdout
    assert json.loads(out)["openapi"].startswith("3.")
