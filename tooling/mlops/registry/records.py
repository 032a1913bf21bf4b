"""The registry's immutable records: model versions and dataset versions, with their lineage.

Each is a frozen dataclass with ``to_dict``/``from_dict`` (JSON-ready values) and
``to_json``/``from_json`` (canonical JSON text: sorted keys, so equal records serialise
to equal bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any

from mlops.errors import RegistryError

Dim = int | str | None


def _check_relpath(path: str, where: str) -> str:
    p = PurePosixPath(path)
    if not path or not p.parts or p.is_absolute() or ".." in p.parts or path != p.as_posix() or "\\" in path \
            or "\0" in path:
        raise RegistryError(f"{where}: file path {path!r} must be a relative POSIX path without '..'")
    return path


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, indent=2) + "\n"


def _loads(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RegistryError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return d


def _reason(e: Exception) -> str:
    if isinstance(e, RegistryError):
        return str(e)
    if isinstance(e, KeyError):
        return f"field {e} is missing"
    return f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class FileEntry:
    """One file of a model or dataset: its name inside the asset, sha256 and size in bytes."""

    path: str
    digest: str
    size: int

    def __post_init__(self) -> None:
        _check_relpath(self.path, "file entry")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileEntry:
        return cls(str(d["path"]), str(d["digest"]), int(d["size"]))


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a model: ``dtype`` like ``tensor(float)``, dynamic dims as None or a name."""

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": None if self.shape is None else list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        shape = d.get("shape")
        return cls(str(d["name"]), str(d["dtype"]), None if shape is None else tuple(shape))


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
                   tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])))


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: the commit (and its message: the "why"), the pipeline run,
    the input data, the environment, and who registered it when (UTC ISO 8601)."""

    git_commit: str | None = None
    git_author: str | None = None
    git_message: str | None = None
    git_dirty: bool | None = None
    pipeline: str | None = None
    pipeline_run: str | None = None
    input_digests: dict[str, str] = field(default_factory=dict)
    environment_identity: str | None = None
    registered_by: str | None = None
    registered_at: str | None = None
    training_data: dict[str, Any] | None = None  # the monitoring baseline: mlops.monitoring.baseline
    trigger: str | None = None  # why it was built when git did not change (``--retrain``: a drift alert)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lineage:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RegistryError(f"unknown lineage field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(d)
        values["input_digests"] = dict(values.get("input_digests") or {})
        return cls(**values)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version of a model. ``tags`` here are the current tags
    (tags are mutable metadata kept in a separate record)."""

    name: str
    version: int
    flavor: str
    files: tuple[FileEntry, ...]
    signature: Signature | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    description: str = ""
    fingerprint: str = ""  # identity of the content; equal fingerprints mean "already registered"
    # Not part of the record: set on the value register_model() returns when it made a new version.
    created: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ModelVersion",
            "name": self.name,
            "version": self.version,
            "flavor": self.flavor,
            "files": [asdict(f) for f in self.files],
            "signature": None if self.signature is None else self.signature.to_dict(),
            "metrics": self.metrics,
            "tags": self.tags,
            "lineage": self.lineage.to_dict(),
            "description": self.description,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelVersion:
        try:
            sig = d.get("signature")
            return cls(
                name=str(d["name"]),
                version=int(d["version"]),
                flavor=str(d["flavor"]),
                files=tuple(FileEntry.from_dict(f) for f in d["files"]),
                signature=None if sig is None else Signature.from_dict(sig),
                metrics=dict(d.get("metrics") or {}),
                tags={str(k): str(v) for k, v in (d.get("tags") or {}).items()},
                lineage=Lineage.from_dict(d.get("lineage") or {}),
                description=str(d.get("description") or ""),
                fingerprint=str(d.get("fingerprint") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RegistryError) as e:
            raise RegistryError(f"malformed model version record: {_reason(e)}") from e

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelVersion:
        return cls.from_dict(_loads(text, "model version record"))


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable registered version of a dataset (a file, or a directory of files).

    ``digest`` identifies the whole content: for a file, the file's sha256; for a
    directory, the sha256 of its manifest (``"<sha256>  <relative path>\\n"`` per file,
    sorted by path, as ``sha256sum`` prints it).
    """

    name: str
    version: int
    kind: str  # file | directory
    files: tuple[FileEntry, ...]
    digest: str
    size: int
    lineage: Lineage = field(default_factory=Lineage)
    description: str = ""
    # Not part of the record: set on the value register_dataset() returns when it made a new version.
    created: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "DatasetVersion",
            "name": self.name,
            "version": self.version,
            "layout": self.kind,
            "files": [asdict(f) for f in self.files],
            "digest": self.digest,
            "size": self.size,
            "lineage": self.lineage.to_dict(),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetVersion:
        try:
            return cls(
                name=str(d["name"]),
                version=int(d["version"]),
                kind=str(d["layout"]),
                files=tuple(FileEntry.from_dict(f) for f in d["files"]),
                digest=str(d["digest"]),
                size=int(d["size"]),
                lineage=Lineage.from_dict(d.get("lineage") or {}),
                description=str(d.get("description") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RegistryError) as e:
            raise RegistryError(f"malformed dataset version record: {_reason(e)}") from e

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetVersion:
        return cls.from_dict(_loads(text, "dataset version record"))
