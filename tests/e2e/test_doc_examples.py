"""Every example of README.md and docs/*.md runs (tests/support/docs.py sorts
them): curl commands against the real stack answer JSON and the statuses the
docs show, CLI and SDK blocks exit 0, transcripts say what they show, service
commands start and stop on Ctrl-C, and data blocks parse."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import databases, docs
from tests.support.databases import ON_POSTGRES
from tests.support.stack import ROOT, Stack, distinct_ports, start_stack, stop_stack

pytestmark = pytest.mark.e2e


def run_grouped(
    argv: list[str], *, timeout: float, check: bool = False, capture_output: bool = False, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a session of its own: on a timeout the whole group is
    killed (a script's servers, a benchmark's Envoys), not only its leader."""
    if capture_output:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
    with subprocess.Popen(argv, start_new_session=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def blocks_with(marker: str) -> list[tuple[str, str]]:
    """The docs' sh blocks that hold `marker`."""
    return [(b.name, b.text) for b in docs.blocks() if b.language == "sh" and marker in b.text]


def blocks() -> list[tuple[str, str]]:
    """The control-plane API's curl commands."""
    return [(b.name, b.text) for b in docs.of_kind("controlplane")]


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("docs")))
    yield running
    stop_stack(running)


def run(stack: Stack, script: str) -> str:
    script = script.replace("http://localhost:3000", stack.rest)
    script = re.sub(r"(?<=[\s'\"])data/", f"{stack.data_dir}/", script)  # the docs run from a checkout
    return run_grouped(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def cli_blocks() -> list[tuple[str, str, str]]:
    """Blocks that use the CLI (sh) or the SDK (python)."""
    return [(b.name, "sh", b.text) for b in docs.of_kind("cli")] + [
        (b.name, "python", b.text) for b in docs.of_kind("python")
    ]


def cloud_blocks() -> list[tuple[str, str]]:
    """The cloud API's curl commands, as Redis Cloud's documentation writes them."""
    return [(b.name, b.text) for b in docs.of_kind("cloud")]


def crdb_blocks() -> list[tuple[str, str]]:
    """The enterprise API's curl commands (`curl -k -u …`)."""
    return [(b.name, b.text) for b in docs.of_kind("crdb")]


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
        out = run_grouped(
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
    listed = run_grouped(
        ["bash", "-euo", "pipefail", "-c", setup + 'curl -sS "https://$HOST/tasks" '
         '-H "x-api-key: $ACCOUNT_KEY" -H "x-api-secret-key: $SECRET_KEY"'],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    tasks = json.loads(listed)["tasks"]
    assert {t["status"] for t in tasks} >= {"received", "processing-in-progress", "processing-completed"}
    script = setup + f"export TASK_ID={tasks[0]['taskId']}\n" + block.replace("127.0.0.1:8443", cloud_host)
    out = run_grouped(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    ).stdout
    answer = json.loads(out)
    assert "tasks" in answer or answer["taskId"] == tasks[0]["taskId"], (name, answer)


def shell(block: str) -> str:
    """The block as a script: `tasktrail` (installed, or `.venv/bin/tasktrail`) is
    this interpreter's, as the docs' virtualenv would be."""
    define = f'tasktrail() {{ "{sys.executable}" -m tasktrail "$@"; }}\n'
    return define + block.replace(".venv/bin/tasktrail", "tasktrail")


def example_env(stack: Stack) -> dict[str, str]:
    """What the reader has after `make run`: the target, the development token,
    the stack's store (./data/tasktrail.db on SQLite; PostgreSQL in that run)."""
    return {
        **os.environ,
        "TASKTRAIL_TARGET": stack.grpc_target,
        "TASKTRAIL_TOKEN": stack.token,
        "TASKTRAIL_DATABASE_URL": stack.database_url,
        "NO_COLOR": "1",
    }


@pytest.mark.parametrize(("name", "kind", "block"), cli_blocks(), ids=[n for n, _, _ in cli_blocks()])
def test_cli_and_sdk_example(docs_stack: Stack, tmp_path: Path, name: str, kind: str, block: str) -> None:
    # Run where a `make run` would be: ./data is the stack's data directory.
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    (tmp_path / "gen").symlink_to(ROOT / "gen")
    if kind == "sh":
        script = shell(block).replace("localhost:50051", docs_stack.grpc_target)
        argv = ["bash", "-euo", "pipefail", "-c", script]
    else:
        argv = [sys.executable, "-c", block.replace("localhost:50051", docs_stack.grpc_target)]
    done = run_grouped(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=example_env(docs_stack))
    assert done.returncode == 0, (name, done.stdout, done.stderr)
    if "print(" in block or kind == "sh":
        assert done.stdout
    if "TaskStatus(" in block:  # statuses print as words, never as the enum's numbers
        assert re.search(r"\b(pending|running|canceling|completed|failed|canceled)\b", done.stdout), done.stdout


def transcript_context(comment: str, stack: Stack, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The situation a transcript's comment names: its environment and directory."""
    env = example_env(stack)
    if "no token" in comment:  # run elsewhere: no ./data, no TASKTRAIL_TOKEN
        del env["TASKTRAIL_TOKEN"]
        return env, tmp_path
    if "reader" in comment:
        env["TASKTRAIL_TOKEN"] = stack.tasktrail("tokens", "create", "--name", "doc-reader", "--role", "reader",
                                                 "--grant", "database").splitlines()[0]  # fmt: skip
    return env, tmp_path


def lead(line: str) -> str:
    """What a transcript line says before anything that varies (an id, a count, a time, a quote)."""
    return re.split(r"[0-9\"'(…]", line, maxsplit=1)[0]


@pytest.mark.parametrize("block", docs.of_kind("transcript"), ids=lambda b: b.name)
def test_transcript(docs_stack: Stack, tmp_path: Path, block: docs.Block) -> None:
    """Each `$ command` of a console transcript runs, and its first and last
    lines say what the transcript shows (up to what varies); an error line
    (`tasktrail: CODE: …`) means a failed exit."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    for command, shown in steps:
        command, _, comment = command.partition("  #")
        env, cwd = transcript_context(comment, docs_stack, tmp_path)
        script = shell(command).replace("127.0.0.1:50051", docs_stack.grpc_target)
        if "${fpath[1]}" in script:  # zsh's function path (counted from 1), in bash (from 0)
            script = f"fpath=(- {tmp_path})\n" + script
        done = run_grouped(
            ["bash", "-uo", "pipefail", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=120, cwd=cwd, env=env,
        )  # fmt: skip
        said = [x for x in done.stdout.splitlines() if not x.startswith("store: ")]
        if not shown:
            assert done.returncode == 0, (command, done.stdout)
            continue
        assert said, command
        assert lead(said[0]) == lead(shown[0]), (command, said[0])
        if shown[-1] != "…":
            assert lead(said[-1]) == lead(shown[-1]), (command, said[-1])
        failed = re.match(r"tasktrail: [A-Z_]+: ", shown[-1]) is not None
        assert (done.returncode != 0) == failed, (command, done.returncode, done.stdout)


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
    out = run_grouped(
        ["bash", "-euo", "pipefail", "-c", block], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    ).stdout
    assert json.loads(out)["openapi"].startswith("3.")


@pytest.mark.parametrize("block", docs.of_kind("grpc"), ids=lambda b: b.name)
def test_grpc_example(docs_stack: Stack, tmp_path: Path, block: docs.Block) -> None:
    """`buf curl` (make lint installs it) against the gRPC port, through reflection."""
    (tmp_path / "data").symlink_to(docs_stack.data_dir)
    tools = ROOT / ".build" / "tools" / "node_modules" / ".bin"
    assert (tools / "buf").exists(), "make lint installs buf"
    setup = "set -a; . data/dev-account.env; set +a\n"
    script = setup + block.text.replace("localhost:50051", docs_stack.grpc_target)
    env = {**example_env(docs_stack), "PATH": f"{tools}:{os.environ['PATH']}"}
    out = run_grouped(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tasks"]


# Each benchmark the docs name, at the smallest size that still runs every part of it.
QUICK = {
    "bench.get_task": ["--tasks", "200", "--seconds", "1", "--rounds", "1", "--connections", "2"],
    "bench.list_pages": ["--sizes", "200", "--requests", "20"],
    "bench.follow": ["--only", "100 followers", "--seconds", "1", "--layout", "one", "--rounds", "1"],
}


@pytest.mark.parametrize("block", docs.of_kind("bench"), ids=lambda b: b.name)
def test_bench_example(tmp_path: Path, block: docs.Block) -> None:
    """The benchmark commands the docs give run (briefly: their figures come from bench/, not from here)."""
    if ON_POSTGRES:
        pytest.skip("the same command as in the SQLite run; benchmarks pick their store themselves")
    module = block.text.split()[2]
    done = run_grouped(
        [sys.executable, "-m", module, *QUICK[module]], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert re.search(r"\d+\.\d+", done.stdout), done.stdout  # it printed figures


@pytest.mark.parametrize("block", docs.of_kind("json") + docs.of_kind("yaml"), ids=lambda b: b.name)
def test_data_example(block: docs.Block) -> None:
    """A JSON answer or a YAML configuration the docs show is well formed."""
    if block.kind == "json":
        assert json.loads(block.text) is not None
    else:
        assert yaml.safe_load(block.text)


@pytest.mark.parametrize("block", docs.of_kind("proto"), ids=lambda b: b.name)
def test_proto_example(block: docs.Block) -> None:
    """A proto excerpt the docs quote is in proto/, word for word."""
    protos = " ".join(" ".join(p.read_text().split()) for p in (ROOT / "proto").rglob("*.proto"))
    for line in block.text.strip().splitlines():
        if not line.startswith("//"):  # the docs' own gloss
            assert " ".join(line.split()) in protos, line


@contextlib.contextmanager
def running(command: str, cwd: Path, env: dict[str, str], ready: bytes) -> Iterator[None]:
    """`command` started as a person would, once it says `ready`; on leaving, a
    Ctrl-C, after which it must stop cleanly (make, interrupted, dies of the
    signal as it should once its command has stopped)."""
    log = cwd / f"service-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while ready not in log.read_bytes():
            assert proc.poll() is None, (command, log.read_text()[-3000:])
            assert time.monotonic() < deadline, (command, log.read_text()[-3000:])
            time.sleep(0.1)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # as Ctrl-C in a terminal: the whole group, leader gone or not
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    said = log.read_text()
    clean = code == 0 or (command.startswith("make ") and code == -signal.SIGINT and '"message": "stopped"' in said)
    assert clean, (command, code, said[-3000:])


def commands(block: str) -> list[str]:
    """The block's command lines, continuations joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


UP, SERVING = b"tasktrail is up.", b"tasktrail server listening"


@pytest.mark.parametrize("block", docs.of_kind("service"), ids=lambda b: b.name)
def test_service_example(tmp_path: Path, block: docs.Block) -> None:
    """`make run`, `tasktrail up`, `serve` and `migrate` as the docs give them,
    in a fresh directory; the ones that run until Ctrl-C are stopped by one.
    A PostgreSQL URL (db.internal) is the test run's server; other hosts
    (app-1.internal …) are this one, on free ports; every server binds loopback."""
    env, spare = service_env()
    text = block.text.replace(".venv/bin/tasktrail", "tasktrail").replace("--host 0.0.0.0", "--host 127.0.0.1")
    fresh_pg = None
    if "postgresql+asyncpg://tasktrail@db.internal/tasktrail" in text:
        if not ON_POSTGRES:
            pytest.skip("a PostgreSQL example: it runs in the PostgreSQL run")
        fresh_pg = databases.fresh_url(tmp_path)
        text = text.replace("postgresql+asyncpg://tasktrail@db.internal/tasktrail", fresh_pg)
    hosts = sorted(set(re.findall(r"app-\d\.internal:\d+", text)))
    here = {host: f"127.0.0.1:{spare.pop()}" for host in hosts}
    for host, address in here.items():
        text = text.replace(host, address)
    lines = [line.replace("tasktrail ", f"{sys.executable} -m tasktrail ", 1) for line in commands(text)]
    alone = {k: v for k, v in env.items() if k != "TASKTRAIL_METRICS_PORT"}  # a serve's metrics are off by default
    try:
        with contextlib.ExitStack() as started:
            for line in lines:
                if line == "make run":
                    make = f"make -C {ROOT} run RUN_ARGS='--data-dir {tmp_path}/data'"
                    started.enter_context(running(make, tmp_path, env, UP))
                elif " tasktrail migrate" in line:
                    done = run_grouped(
                        ["bash", "-c", line], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
                    )
                    assert done.returncode == 0, done.stderr
                elif " tasktrail serve" in line and here:  # once on each host the block names, until the edge is up
                    for address in here.values():
                        port = address.rsplit(":", 1)[1]
                        started.enter_context(running(re.sub(r"--port \d+", f"--port {port}", line), tmp_path, alone,
                                                      SERVING))  # fmt: skip
                    continue
                elif " tasktrail serve" in line:
                    line = re.sub(r"--port \d+", f"--port {spare.pop()}", line)
                    started.enter_context(running(line, tmp_path, alone, SERVING))
                elif " tasktrail up" in line:
                    started.enter_context(running(line, tmp_path, env, UP))
                else:
                    raise AssertionError(f"{block.name}: a service example this test cannot run: {line}")
                if not here:  # one at a time: each line is its own example
                    started.close()
    finally:
        if fresh_pg is not None:
            databases.drop(fresh_pg)


def service_env() -> tuple[dict[str, str], list[int]]:
    """Free ports for every listener, through the settings' environment
    variables, and spare ones (all different) for the servers a block starts."""
    (rest, grpc_port, admin, cloud, crdb, metrics, *spare), server = distinct_ports(10, 4)
    ports = {"REST": rest, "GRPC": grpc_port, "ADMIN": admin, "CLOUD": cloud, "CRDB": crdb, "METRICS": metrics}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env |= {f"TASKTRAIL_{k}_PORT": str(v) for k, v in ports.items()}
    return env | {"TASKTRAIL_SERVER_PORT": str(server), "TASKTRAIL_SHUTDOWN_GRACE": "2", "NO_COLOR": "1"}, spare
