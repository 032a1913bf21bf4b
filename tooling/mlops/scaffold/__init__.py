"""`mlops init`: a new project from jinja2 templates (package data), and the GitHub workflows.

The same workflow templates render this repository's own ``.github/workflows`` (``workflows(...)`` with
``SELF``), so what `mlops init` writes is what runs here. Templates use ``[[ ]]`` and ``[% %]``:
``${{ }}`` belongs to GitHub.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops.errors import MlopsError


class ScaffoldError(MlopsError):
    """``mlops init`` cannot write the project (files in the way, a bad directory)."""

    exit_code = 1


@dataclass(frozen=True)
class Settings:
    """What the templates are rendered with."""

    project: str = "my-project"
    install: str = "pip install mlops-gitops"
    python_version: str = "3.11"
    pip_cache: str = ""  # a file to key setup-python's pip cache on; "" for no cache
    store_type: str = "git"
    environment: str = "production"  # the GitHub Environment of the production job
    stage: str = "prod"  # the stage it approves


# This repository's own workflows: mlops installed from the checkout.
SELF = Settings(install="pip install -e .", pip_cache="pyproject.toml")

WORKFLOWS = {
    ".github/workflows/pr.yml": "workflow-pr.yml.j2",
    ".github/workflows/main.yml": "workflow-main.yml.j2",
    ".github/workflows/monitor.yml": "workflow-monitor.yml.j2",
    ".github/workflows/retrain.yml": "workflow-retrain.yml.j2",
}
PROJECT = {
    "mlops.yaml": "mlops.yaml.j2",
    "pipelines/example-train.yaml": "pipeline.yaml.j2",
    "pipelines/example/model.py": "model_py.j2",
    "pipelines/example/prepare.py": "prepare_py.j2",
    "pipelines/example/train.py": "train_py.j2",
    "pipelines/example/evaluate.py": "evaluate_py.j2",
    "models/example-classifier.yaml": "model.yaml.j2",
    "tests/test_example.py": "test_example.py.j2",
    ".gitignore": "gitignore.j2",
    **WORKFLOWS,
}
FOLDERS = ("environments", "endpoints")  # empty for now: kept in git with a .gitkeep


def render(files: dict[str, str], settings: Settings) -> dict[str, str]:
    """``{path: text}`` of ``files`` (path -> template name) rendered with ``settings``."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mlops.scaffold", "templates"),
                             variable_start_string="[[", variable_end_string="]]", block_start_string="[%",
                             block_end_string="%]", comment_start_string="[#", comment_end_string="#]",
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    values = asdict(settings)
    return {path: env.get_template(name).render(**values) for path, name in files.items()}


def project_name(directory: Path) -> str:
    """A spec name from the directory's name (lower case letters, digits and dashes)."""
    name = re.sub(r"[^a-z0-9]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or "my-project"


def default_store_type() -> str:
    """``git`` (state under refs/mlops/ on origin) when this mlops has that store type, else ``local``."""
    import json
    from importlib.resources import files

    schema = json.loads(files("mlops.spec").joinpath("schemas/project.json").read_text())
    try:
        types = schema["properties"]["stores"]["properties"]["artifacts"]["properties"]["type"]["enum"]
    except (KeyError, TypeError):
        return "local"
    return "git" if "git" in types else "local"


def scaffold(directory: Path, settings: Settings, *, force: bool = False) -> list[str]:
    """Write the project into ``directory`` (created if missing); the paths written, relative.

    Nothing is written when any file exists already, unless ``force`` (then those are overwritten)."""
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory}: exists and is not a directory")
    texts = render(PROJECT, settings)
    texts.update({f"{folder}/.gitkeep": "" for folder in FOLDERS})
    clashes = sorted(p for p in texts if os.path.lexists(directory / p))
    if clashes and not force:
        shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise ScaffoldError(f"{directory}: {shown} already exist{'s' if len(clashes) == 1 else ''}; nothing written "
                            "(--force overwrites them)")
    for rel in texts:
        path = directory / rel
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ScaffoldError(f"{path}: not a regular file; not overwritten")
        for parent in list(Path(rel).parents)[:-1]:  # a linked folder would lead the files out of the project
            if (directory / parent).is_symlink():
                raise ScaffoldError(f"{directory / parent}: a symbolic link; nothing written through it")
            if os.path.lexists(directory / parent) and not (directory / parent).is_dir():
                raise ScaffoldError(f"{directory / parent}: exists and is not a directory; nothing written")
    existing = next((p for p in [directory, *directory.parents] if os.path.lexists(p)), None)
    if existing is not None and not existing.is_dir():
        raise ScaffoldError(f"{existing}: not a directory; nothing written")
    from mlops.paths import write_atomic

    for rel, text in texts.items():
        path = directory / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text.encode())
        except OSError as e:  # checked above; a disk full or a permission can still refuse it
            raise ScaffoldError(f"{path}: cannot write it ({e.strerror or e}); files written before it stay "
                                "(run again with --force once it can be written)") from None
    return sorted(texts)
