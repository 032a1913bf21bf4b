"""The codebase keeps its own rules: the layers in DESIGN.md (import-linter), ruff and mypy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_import_layers_hold() -> None:
    out = run(tool("lint-imports"), "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 6 kept, 0 broken." in out.stdout


def test_ruff_clean() -> None:
    out = run(tool("ruff"), "check", "tooling", "tests", "benchmarks", "pipelines")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_clean() -> None:
    out = run(sys.executable, "-m", "mypy")
    assert out.returncode == 0, out.stdout + out.stderr


def test_help_does_not_import_the_world() -> None:
    code = ("import sys; from mlops.cli.main import cli; "
            "sys.argv=['mlops','--help']\n"
            "try:\n    cli.main(standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('git', 'jsonschema', 'jinja2', 'docker', 'onnxruntime', 'boto3', 'numpy') "
            "if m in sys.modules]\nprint('heavy=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "Commands:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "heavy="  # --help loads none of the heavy modules
