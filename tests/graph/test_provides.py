"""`mlops validate` warns, at the import line, when a step's code imports a third-party module that
its environment does not provide (judged with this host's package metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.graph.provides import missing_imports
from mlops.spec.loader import load_specs
from mlops.spec.source import WorktreeSource
from tests.gitrepo import Repo, example_repo, mlops


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def line_of(path: Path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith(text))


def warnings_of(repo: Repo) -> list[str]:
    return [str(w) for w in missing_imports(load_specs(repo.path), WorktreeSource(repo.path))]


def test_the_example_environments_provide_what_their_steps_import(repo: Repo) -> None:
    assert warnings_of(repo) == []
    out = mlops(repo, "validate")
    assert "warning" not in out.stderr and out.stdout.startswith("ok: 6 spec files valid (")


def test_an_unlisted_import_is_a_warning_at_its_line(repo: Repo) -> None:
    repo.edit("environments/sklearn.yaml", "  - onnxruntime>=1.17\n", "")
    line = line_of(repo.path / "pipelines/wine/export.py", "import onnxruntime")
    message = ("step wine-train/export imports onnxruntime, which environment sklearn (environments/sklearn.yaml) "
               "does not provide")
    assert warnings_of(repo) == [f"pipelines/wine/export.py:{line}: warning: {message}"]

    out = mlops(repo, "validate", env={"GITHUB_ACTIONS": "true"})  # a warning does not fail validation
    assert out.stderr.splitlines() == [f"pipelines/wine/export.py:{line}: warning: {message}"]
    assert f"::warning file=pipelines/wine/export.py,line={line}::{message}" in out.stdout.splitlines()
    assert out.stdout.splitlines()[-1].endswith("; 1 warning")
    as_json = json.loads(mlops(repo, "validate", "--output", "json").stdout)
    assert as_json["valid"] is True
    assert as_json["warnings"] == [{"file": "pipelines/wine/export.py", "line": line, "module": "onnxruntime",
                                    "steps": ["wine-train/export"], "environment": "sklearn", "message": message}]


def test_dependencies_of_listed_requirements_are_provided_but_not_the_other_way_round(repo: Repo) -> None:
    # scikit-learn depends on numpy (as installed here): listing it provides numpy...
    repo.edit("environments/sklearn.yaml", "  - numpy>=1.24\n", "")
    assert warnings_of(repo) == []
    # ...but numpy provides no scikit-learn, and skl2onnx does not provide onnxruntime
    repo.edit("environments/sklearn.yaml", "  - scikit-learn>=1.3\n", "  - numpy>=1.24\n")
    repo.edit("environments/sklearn.yaml", "  - skl2onnx>=1.16\n", "")
    repo.edit("environments/sklearn.yaml", "  - onnxruntime>=1.17\n", "")
    got = warnings_of(repo)
    modules = {w.split(" import")[1].split(" ")[1].rstrip(",") for w in got}
    assert modules == {"sklearn", "skl2onnx", "onnxruntime"}
    # common.py is shared: one warning at its line, naming every step that imports it
    line = line_of(repo.path / "pipelines/wine/common.py", "from sklearn")
    assert (f"pipelines/wine/common.py:{line}: warning: steps wine-train/evaluate, wine-train/export, "
            "wine-train/prepare, wine-train/train import sklearn, which environment sklearn "
            "(environments/sklearn.yaml) does not provide") in got


def test_local_stdlib_optional_and_environmentless_imports_are_fine(repo: Repo) -> None:
    repo.write("pipelines/tools/helper.py", "import json\nfrom pipelines.tools import more\n")
    repo.write("pipelines/tools/more.py", "import xml.etree.ElementTree\n")
    repo.write("pipelines/tools/step.py",
               "import os\nimport helper\nfrom pipelines.tools import more\n"
               "try:\n    import ujson_not_installed_here\nexcept ImportError:\n    ujson_not_installed_here = None\n"
               "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_extensions_not_here\n"
               "def main():\n    import definitely_missing_module_xyz\n")
    repo.write("pipelines/tools.yaml",
               "kind: Pipeline\nname: tools\nsteps:\n"
               "  - {name: bare, command: [python, pipelines/tools/step.py]}\n"
               "  - {name: inenv, command: [python, pipelines/tools/step.py], environment: sklearn}\n")
    got = warnings_of(repo)
    assert got == ["pipelines/tools/step.py:12: warning: step tools/inenv imports definitely_missing_module_xyz, "
                   "which environment sklearn (environments/sklearn.yaml) does not provide"]


def test_a_module_nobody_installed_is_not_judged_when_a_requirement_is_missing_here(repo: Repo) -> None:
    repo.edit("environments/sklearn.yaml", "  - numpy>=1.24\n", "  - numpy>=1.24\n  - some-dist-not-installed-here\n")
    repo.write("pipelines/wine/prepare.py",
               (repo.path / "pipelines/wine/prepare.py").read_text() + "\nimport some_module_not_installed_here\n")
    assert warnings_of(repo) == []  # the uninstalled requirement may well provide it
