"""The import rule between folders (see README, Architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {
    "kappa",
    "schemas",
    "producers",
    "connect",
    "stream_jobs",
    "iceberg",
    "training",
    "infra",
    "tests",
    "benchmarks",
}
# folder -> the packages of ours it may import
ALLOWED = {
    "schemas": set(),
    "kappa": {"schemas"},  # the core; the CLI below is the exception
    "producers": {"kappa", "schemas"},
    "connect": {"kappa"},
    "stream_jobs": {"kappa", "schemas", "iceberg"},
    "iceberg": {"kappa"},
    "training": {"kappa", "iceberg"},
    "infra": {"kappa"},
}
# The CLI is the front door: it dispatches to every stage (lazily, inside commands).
CLI_ALLOWED = OURS - {"tests", "benchmarks"}
# The operations layer (kappa/ops) sits above the stages, like the CLI; the CLI sits above it.
OPS_ALLOWED = CLI_ALLOWED


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def _modules() -> list[Path]:
    return [
        p for folder in ALLOWED for p in (ROOT / folder).rglob("*.py") if ".stack" not in p.parts
    ]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_folder_rule(path: Path) -> None:
    folder = path.relative_to(ROOT).parts[0]
    room = path.relative_to(ROOT).parts[:2]
    in_cli, in_ops = room == ("kappa", "cli"), room == ("kappa", "ops")
    allowed = (CLI_ALLOWED if in_cli else OPS_ALLOWED if in_ops else ALLOWED[folder]) | {folder}
    bad = _imports(path) - allowed
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; allowed: {sorted(allowed)}"


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "kappa" / "ops").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_ops_never_imports_the_cli(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m == "kappa.cli" or m.startswith("kappa.cli.")]


def test_cli_help_does_not_import_heavy_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from kappa.cli import cli; "
        "import click.testing as t; t.CliRunner().invoke(cli, ['--help']); "
        "heavy = [m for m in ('pyspark', 'mlflow', 'pyiceberg', 'confluent_kafka', 'pandas') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
