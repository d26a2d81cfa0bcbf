"""The house rules that import-linter cannot state (docs/development.md): each
checked over the source, so that a change that breaks one fails here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import ROOT

PACKAGE = ROOT / "server" / "tasktrail"
STORE = PACKAGE / "store"


def sources(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*.py") if "node_modules" not in p.parts)


def module_name(path: Path) -> str:
    base = ROOT / "server" if path.is_relative_to(ROOT / "server") else ROOT
    return ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")


def imported(path: Path) -> Iterator[str]:
    """Every module an import statement of `path` names (absolute ones; relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize(
    "pattern",
    [r"^\s*import sqlite3\b", r"^\s*import asyncpg\b", r"^\s*from (sqlite3|asyncpg)\b", r"dialect\.name\s*==",
     r"isinstance\([^)]*Sqlite", r"isinstance\([^)]*Postgres"],
)  # fmt: skip
def test_database_differences_live_in_the_store(pattern: str) -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sources(PACKAGE)
        if not path.is_relative_to(STORE)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not outside, outside


def test_no_module_imports_another_packages_private_module() -> None:
    """`_x` modules are their package's own: others use what the package re-exports."""
    found = []
    for path in sources(PACKAGE, ROOT / "tests", ROOT / "bench"):
        importer = module_name(path)
        importer_package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for name in imported(path):
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if owner != importer_package:
                        found.append(f"{importer} imports {name}")
                    break
    assert not found, found


def test_the_core_names_no_dialect_and_no_generated_message() -> None:
    words = re.compile(r"\b(tasktrail\.(v1|controlplane|cloud|crdb)|grpc|sqlalchemy|httpx?|urllib)\b")
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources(PACKAGE / "core")
        for name in imported(path)
        if words.match(name)
    ]
    assert not found, found
