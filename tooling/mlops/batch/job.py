"""The settings of one batch run, from an endpoint's ``batch`` block (or the command line's overrides).

Paths a spec names are untrusted: the input must be a regular file inside the repository (links followed
only while they stay inside, never into ``.git`` or ``.mlops``); the output, and the errors log beside it
(``OUTPUT.errors.jsonl``), must be new paths: not a spec, not tracked by git, not the input, with no
symbolic link among their parent directories. Paths given on the command line are the operator's own and
are taken as given (relative to the current directory).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops import paths
from mlops.errors import BatchError, PathError
from mlops.spec.model import Endpoint
from mlops.spec.source import SPEC_DIRS, is_spec_path

DEFAULT_MINI_BATCH = 10_000  # rows: large enough that per-batch costs vanish, small enough for any memory
INPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ERRORS_SUFFIX = ".errors.jsonl"


@dataclass(frozen=True)
class BatchJob:
    """One batch run. ``input``/``output``/``errors`` are absolute; ``*_name`` is how they are shown
    (repository-relative for spec paths). ``in_repo``: the paths are the spec's, confined to ``root``."""

    endpoint: str
    root: Path
    input: Path
    output: Path
    errors: Path
    input_name: str
    output_name: str
    input_format: str
    output_format: str
    mini_batch_size: int = DEFAULT_MINI_BATCH
    error_threshold: int = -1  # errors allowed before the run stops; -1: no limit
    id_column: str | None = None  # None: rows are identified by their number (1 = the first data row)
    in_repo: bool = True
    input_rel: str | None = None  # the spec's input (repository-relative): opened confined to the repository
    output_rel: str | None = None  # the spec's output: written without following a link
    deployment: str = "main"  # the endpoint's one deployment (named in the audit trail)

    def open_input(self) -> int:
        """A read-only descriptor of the input (a spec's input is opened through ``paths.open_inside``,
        so a component swapped for a link after the checks fails instead of being followed)."""
        if self.input_rel is not None:
            try:
                return paths.open_inside(self.root, self.input_rel)
            except PathError as e:
                raise BatchError(f"input {self.input_name}: {e}") from None
        try:
            return os.open(self.input, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise BatchError(f"input {self.input_name}: {e.strerror}") from None

    @property
    def workdir(self) -> Path:
        """Where the run keeps its journal and partial files: ``.mlops/batch/<endpoint>``."""
        return paths.own_path(self.root, f".mlops/batch/{self.endpoint}")

    def settings(self) -> dict[str, Any]:
        """What decides the output's bytes besides the input and the model (part of a run's identity)."""
        return {"input": self.input_name, "output": self.output_name, "input_format": self.input_format,
                "output_format": self.output_format, "mini_batch_size": self.mini_batch_size,
                "error_threshold": self.error_threshold, "id_column": self.id_column}


def job_for(endpoint: Endpoint, root: Path, input: str | None = None, output: str | None = None) -> BatchJob:
    """The run of ``endpoint``'s batch block; ``input``/``output`` (command-line paths) override the spec's."""
    where = endpoint.file or endpoint.name
    if endpoint.type != "batch":
        raise BatchError(f"{where}: endpoint {endpoint.name!r} is {endpoint.type!r}, not a batch endpoint")
    batch = endpoint.batch or {}
    for field in ("input", "output"):
        if not isinstance(batch.get(field), str) and (input if field == "input" else output) is None:
            raise BatchError(f"{where}: $.batch.{field}: a batch endpoint needs batch.{field} (a path in the "
                             "repository)")
    size = batch.get("mini_batch_size", DEFAULT_MINI_BATCH)
    threshold = batch.get("error_threshold", -1)
    id_column = batch.get("id_column")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BatchError(f"{where}: $.batch.mini_batch_size: {size!r} is not a positive number of rows")
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < -1:
        raise BatchError(f"{where}: $.batch.error_threshold: {threshold!r} is not -1 or a number of rows")
    if id_column is not None and (not isinstance(id_column, str) or not id_column):
        raise BatchError(f"{where}: $.batch.id_column: {id_column!r} is not a column name")
    root = Path(root)
    if input is None:
        src, in_name = _spec_input(root, batch["input"], where), paths.lexical(batch["input"])
    else:
        src = Path(os.path.abspath(input))
        in_name = str(src)
        if not src.is_file():
            raise BatchError(f"--input {input}: no such file")
    if output is None:
        out_name = _spec_output(root, batch["output"], batch["input"] if input is None else None, where)
        dst = root / out_name
    else:
        dst = Path(os.path.abspath(output))
        out_name = str(dst)
    if os.path.realpath(src) == os.path.realpath(dst):
        raise BatchError(f"the output {out_name} is the input: predictions are written to a new file")
    return BatchJob(endpoint.name, root, src, dst, Path(f"{dst}{ERRORS_SUFFIX}"), in_name, out_name,
                    _format(in_name, INPUT_FORMATS, "input", where), _format(out_name, OUTPUT_FORMATS, "output", where),
                    size, threshold, id_column, input is None and output is None,
                    in_name if input is None else None, out_name if output is None else None,
                    endpoint.deployments[0].name if endpoint.deployments else "main")


def _format(name: str, formats: dict[str, str], what: str, where: str) -> str:
    suffix = posixpath.splitext(name.lower())[1]
    if suffix not in formats:
        raise BatchError(f"{where}: $.batch.{what}: {name!r}: the {what} must end with one of "
                         f"{', '.join(sorted(formats))} (it names the format)")
    return formats[suffix]


def _spec_input(root: Path, value: str, where: str) -> Path:
    try:
        paths.spec_path(value)
        real = paths.resolve_inside(root, value)
    except PathError as e:
        raise BatchError(f"{where}: $.batch.input: {e}") from None
    if not real.is_file():
        raise BatchError(f"{where}: $.batch.input: {value!r} is not a file in the repository")
    return real


def _spec_output(root: Path, value: str, input_value: str | None, where: str) -> str:
    """The output's normalised path, after every rule for written paths (the errors log's too)."""
    try:
        norm = paths.spec_path(value)
        if not norm:
            raise PathError(f"path {value!r} is the repository root")
        top = paths.reserved(norm)
        if top is not None:
            raise PathError(f"path {value!r} is inside {top}/, which specs may not name")
        if is_spec_path(norm) or norm in SPEC_DIRS:
            raise PathError(f"path {value!r} would overwrite specs")
        if input_value is not None and paths.overlap(norm, paths.lexical(input_value)):
            raise PathError(f"path {value!r} is the input: predictions are written to a new file")
        for rel in (norm, norm + ERRORS_SUFFIX):
            paths.check_writable(root, rel)
            if os.path.isdir(root / rel) and not os.path.islink(root / rel):
                raise PathError(f"path {rel!r} is a directory")
        hits = paths.tracked(root, [norm, norm + ERRORS_SUFFIX])
        for rel, hit in hits.items():
            raise PathError(paths.tracked_problem(rel, rel, hit))
    except PathError as e:
        raise BatchError(f"{where}: $.batch.output: {e}") from None
    return norm
