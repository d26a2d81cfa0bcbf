"""Both installs work: the editable one the tests run on, and a regular wheel,
which carries server/ and gen/ as one `tasktrail` package, with Envoy's
template and the descriptor set inside it, so that `tasktrail up` runs from
any directory of a fresh virtualenv."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tasktrail
from tests.support.stack import ROOT, distinct_ports, http_get

pytestmark = pytest.mark.e2e

MODULES = [
    "tasktrail.cli.main",
    "tasktrail.api.server",
    "tasktrail.store.sqlite",
    "tasktrail.store.postgres",
    "tasktrail.client",
    "tasktrail.client.worker",
    "tasktrail.api.dialects.controlplane",
    "tasktrail.v1.task_pb2",
    "tasktrail.v1.task_service_pb2_grpc",
    "tasktrail.v1.writer_service_pb2_grpc",
    "tasktrail.controlplane.v1.controlplane_pb2_grpc",
    "tasktrail.store.migrations.env",
]


def test_editable_install_maps_server_and_gen() -> None:
    assert Path(tasktrail.__file__).resolve().parent == ROOT / "server" / "tasktrail"
    import tasktrail.v1.task_pb2 as task_pb2

    assert Path(task_pb2.__file__).resolve().parent == ROOT / "gen" / "tasktrail" / "v1"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tasktrail as a regular wheel, built once."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [built] = where.glob("tasktrail-*.whl")
    return built


@pytest.mark.timeout(600)
def test_regular_wheel_imports(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    assert "tasktrail/v1/task_pb2.pyi" in names
    assert "tasktrail/py.typed" in names
    assert "tasktrail/store/migrations/versions/0001_initial.py" in names
    assert {
        "tasktrail/edge/envoy/envoy.yaml",
        "tasktrail/edge/envoy/errors.lua",
        "tasktrail/edge/tasktrail.binpb",
    } <= set(names)
    # No stray top-level packages: everything lives under tasktrail/.
    assert {n.split("/")[0] for n in names} == {"tasktrail", wheel.name.split("-")[0] + "-0.1.0.dist-info"}
    # migrations/env.py runs only inside Alembic: import the rest, and check env.py is there.
    script = (
        "import importlib, pathlib, sys; "
        f"mods = [importlib.import_module(m) for m in {MODULES[:-1]!r}]; "
        f"outside = [m.__name__ for m in mods if not pathlib.Path(m.__file__).is_relative_to({str(unpacked)!r})]; "
        "assert not outside, outside"
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=tmp_path, env={"PYTHONPATH": str(unpacked)}, timeout=60
    )


def test_every_subpackage_is_listed_in_pyproject() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(d.relative_to(ROOT / "server").parts)
        for d in (ROOT / "server").rglob("*")
        if d.is_dir() and (d / "__init__.py").exists()
    }
    assert found <= listed, found - listed


def test_the_command_tells_its_version() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    out = subprocess.run(
        [sys.executable, "-m", "tasktrail", "--version"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip() == f"tasktrail {version}"


@pytest.mark.only("sqlite")
@pytest.mark.timeout(600)
def test_a_regular_install_serves_every_port_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (rest, grpc_port, admin, cloud, crdb), server_port = distinct_ports(5, 1)
    ports = ["--rest-port", str(rest), "--grpc-port", str(grpc_port), "--admin-port", str(admin)]
    ports += ["--cloud-port", str(cloud), "--crdb-port", str(crdb), "--server-port", str(server_port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "PYTHON", "VIRTUAL_ENV"))}
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [venv / "bin" / "tasktrail", "up", *ports], cwd=empty, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while b"tasktrail is up." not in log.read_bytes():
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        # Everything it made is in ./data of the directory it ran in.
        assert (empty / "data" / "tasktrail.db").exists()
        status, _, body = http_get(f"http://127.0.0.1:{rest}/v1/tasks")
        assert status == 200, body
        assert b'"tasks"' in body
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        ca = empty / "data" / "tls" / "ca.pem"
        status, _, body = http_get(f"https://127.0.0.1:{cloud}/v1/tasks", ca=ca)
        assert (status, b"UNAUTHORIZED" in body) == (401, True), body
        status, headers, body = http_get(f"https://127.0.0.1:{crdb}/v1/crdb_tasks", ca=ca)
        assert (status, headers.get("www-authenticate", "")[:5]) == (401, "Basic"), body
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, log.read_text()
