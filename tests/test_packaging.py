"""Both installs import cleanly: the editable one the tests run on, and a
regular wheel, which must carry server/ and gen/ as one `tasktrail` package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import tasktrail
from tests.conftest import ROOT

MODULES = [
    "tasktrail.cli",
    "tasktrail.server",
    "tasktrail.store.engine",
    "tasktrail.client",
    "tasktrail.client.worker",
    "tasktrail.dialects.controlplane",
    "tasktrail.v1.task_pb2",
    "tasktrail.v1.task_service_pb2_grpc",
    "tasktrail.v1.writer_service_pb2_grpc",
    "tasktrail.controlplane.v1.controlplane_pb2_grpc",
    "tasktrail.migrations.env",
]


def test_editable_install_maps_server_and_gen() -> None:
    assert Path(tasktrail.__file__).resolve().parent == ROOT / "server"
    import tasktrail.v1.task_pb2 as task_pb2

    assert Path(task_pb2.__file__).resolve().parent == ROOT / "gen" / "tasktrail" / "v1"


@pytest.mark.timeout(600)
def test_regular_wheel_imports(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("tasktrail-*.whl")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    assert "tasktrail/v1/task_pb2.pyi" in names
    assert "tasktrail/py.typed" in names
    assert "tasktrail/migrations/versions/0001_initial.py" in names
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
        "tasktrail" + ".".join(("", *d.relative_to(ROOT / "server").parts))
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
