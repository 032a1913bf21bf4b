"""What the serving image carries: the closure of the server's requirements (no engine needed)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from pathlib import Path

import pytest

import mlops
from mlops.environments.serving_image import SERVER_REQUIREMENTS, requirement_closure
from mlops.errors import EnvironmentBuildError


def test_closure_follows_requirements_but_not_extras_nobody_asked_for() -> None:
    # distributions mlops itself depends on, so that a fresh virtualenv has them
    names = {d.metadata["Name"].lower()
             for d in requirement_closure(("onnxruntime", "jsonschema", "nothing; extra == 'x'"))}
    assert {"onnxruntime", "numpy", "protobuf", "jsonschema", "attrs", "referencing", "rpds-py"} <= names
    assert "sympy" not in names  # only onnxruntime's extra "symbolic" wants it
    with pytest.raises(EnvironmentBuildError, match="not installed"):
        requirement_closure(("surely-not-installed-mlops-test",))


def test_the_image_carries_every_distribution_the_server_imports() -> None:
    """Every third-party module imported anywhere in mlops.serving (and the base modules it uses) is in the
    closure of SERVER_REQUIREMENTS: a new server dependency cannot be forgotten in the image."""
    package = Path(mlops.__file__).parent
    files = [*sorted((package / "serving").rglob("*.py")), *(package / f"{m}.py" for m in ("errors", "paths",
                                                                                           "secrets"))]
    assert len(files) > 3
    tops: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    third_party = {t for t in tops if t != "mlops" and t not in sys.stdlib_module_names}
    owners = metadata.packages_distributions()
    carried = {d.metadata["Name"].lower().replace("_", "-") for d in requirement_closure(SERVER_REQUIREMENTS)}
    missing = {t: owners.get(t) for t in third_party
               if not {o.lower().replace("_", "-") for o in owners.get(t, [t])} & carried}
    assert missing == {}
