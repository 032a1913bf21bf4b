"""The model registry: immutable, numbered model versions in an ArtifactStore.

    mv = register_model(store, "iris", [Path("model.onnx")], flavor="onnx",
                        metrics={"accuracy": 0.97}, lineage=git_lineage(repo_root))
    get_model(store, "iris")          # latest version
    download_model(store, "iris", 3, Path("out/"))

Registering the same content again (same file digests, metrics and git commit) returns the
version that already holds it, so applying a plan twice registers once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.errors import CorruptRecordError, RegistryError
from mlops.registry import files as model_files
from mlops.registry import versions as v
from mlops.registry.lineage import registered_by, utc_now
from mlops.registry.records import FileEntry, Lineage, ModelVersion, Signature
from mlops.registry.signature import read_onnx_signature
from mlops.store.protocol import ArtifactStore

KIND = "models"


def make_lineage(lineage: Lineage | Mapping[str, Any] | None) -> Lineage:
    """A Lineage from a dict such as ``git_lineage()``'s, filling in who registered it and when."""
    if lineage is None:
        lin = Lineage()
    elif isinstance(lineage, Lineage):
        lin = lineage
    else:
        lin = Lineage.from_dict(dict(lineage))
    return dataclasses.replace(lin, registered_by=lin.registered_by or registered_by(),
                               registered_at=lin.registered_at or utc_now())


def model_fingerprint(files: tuple[FileEntry, ...], metrics: Mapping[str, Any], flavor: str) -> str:
    """Identity of a registration's content: what makes a second registration a repeat.

    The commit is deliberately not part of it: retraining that yields byte-identical files and
    metrics (a comment edited in a step, say) is the same model, not a new version to gate and deploy.
    """
    doc = {"files": sorted([f.path, f.digest] for f in files), "metrics": dict(metrics), "flavor": flavor}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _signature(flavor: str, items: list[tuple[str, Path]]) -> Signature | None:
    if flavor != "onnx":
        return None
    onnx = [p for name, p in items if name.endswith(".onnx")]
    if not onnx:
        raise RegistryError("flavor onnx needs an .onnx file among the model's files: got "
                            + ", ".join(name for name, _ in items))
    return read_onnx_signature(onnx[0])


def register_model(store: ArtifactStore, name: str, files: list[Path], flavor: str,
                   metrics: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                   lineage: Lineage | Mapping[str, Any] | None = None, description: str = "",
                   root: Path | None = None) -> ModelVersion:
    """Register a new version of ``name`` (or return the existing one with identical content;
    ``created`` on the result says which).

    Files are uploaded as blobs first, then the version record is created, so a crash in
    between leaves only unreferenced blobs. For the ``onnx`` flavor the signature is read
    from the (first) ``.onnx`` file. With ``root`` (files a spec names), the files are confined
    to that repository (see ``mlops.paths``).
    """
    v.check_name(name, "model")
    if not flavor:
        raise RegistryError(f"model {name!r}: a flavor is required (e.g. onnx)")
    items = model_files.expand(files, root)
    signature = _signature(flavor, items)
    entries = model_files.upload(store, items, root)
    metrics = dict(metrics or {})
    lin = make_lineage(lineage)
    fp = model_fingerprint(entries, metrics, flavor)

    def render(n: int) -> bytes:
        mv = ModelVersion(name, n, flavor, entries, signature, metrics, {str(k): str(t) for k, t in (tags or {}).items()},
                          lin, description, fp)
        return mv.to_json().encode()

    with v.registering(store, KIND, name, lin.registered_by or registered_by()):
        existing = _existing(store, name, fp)
        if existing is not None:
            return existing
        n = v.create_next_version(store, KIND, name, render)
        v.index_fingerprint(store, KIND, name, fp, n)
    return dataclasses.replace(get_model(store, name, n), created=True)


def _existing(store: ArtifactStore, name: str, fp: str) -> ModelVersion | None:
    n = v.lookup_fingerprint(store, KIND, name, fp)
    if n is not None:
        return get_model(store, name, n)
    # A crash after the version record but before its index entry: the orphan is the latest.
    numbers = v.version_numbers(store, KIND, name)
    if numbers:
        latest = get_model(store, name, numbers[-1])
        if latest.fingerprint == fp:
            v.index_fingerprint(store, KIND, name, fp, latest.version)
            return latest
    return None


def get_model(store: ArtifactStore, name: str, version: int | None = None) -> ModelVersion:
    """``name@version`` (the latest if version is None), with its current tags."""
    n, raw = v.read_version(store, KIND, name, version, "model")
    mv = v.parse_version(store, KIND, name, n, raw, ModelVersion.from_json)
    key = v.tags_key(KIND, name, n)
    tags_raw = store.read_record(key)
    if tags_raw is not None:
        try:
            tags = json.loads(tags_raw)
        except (ValueError, RecursionError):
            tags = None
        if not (isinstance(tags, dict) and all(isinstance(t, str) for t in tags.values())):
            raise CorruptRecordError(f"tags record {key} in {store.url} is damaged; delete it (the version "
                                     "keeps no tags then) and set them again with `mlops models tag`")
        mv = dataclasses.replace(mv, tags=tags)
    return mv


def list_models(store: ArtifactStore) -> list[str]:
    """Names of every registered model, sorted."""
    return v.asset_names(store, KIND)


def list_versions(store: ArtifactStore, name: str, problems: list[str] | None = None) -> list[ModelVersion]:
    """Every version of ``name``, oldest first. RegistryError if there is no such model.

    A damaged record raises CorruptRecordError, unless ``problems`` is given: then it is skipped
    and described there.
    """
    numbers = v.version_numbers(store, KIND, v.check_name(name, "model"))
    if not numbers:
        raise RegistryError(f"no model named {name!r} in {store.url}")
    out = []
    for n in numbers:
        try:
            out.append(get_model(store, name, n))
        except CorruptRecordError as e:
            if problems is None:
                raise
            problems.append(str(e))
    return out


def list_latest(store: ArtifactStore, problems: list[str]) -> list[tuple[ModelVersion, int]]:
    """The latest readable version of every model, with its number of versions. Damaged records
    are skipped and described in ``problems``, so one bad record hides nothing else."""
    out = []
    for name in list_models(store):
        try:
            latest, count = v.latest_readable(store, KIND, name, get_model, problems)
        except RegistryError as e:  # e.g. a directory whose name is no model name
            problems.append(str(e))
            continue
        if latest is not None:
            out.append((latest, count))
    return out


def download_model(store: ArtifactStore, name: str, version: int | None, dest_dir: Path) -> list[Path]:
    """Write the files of ``name@version`` into ``dest_dir``, each verified against its digest."""
    mv = get_model(store, name, version)
    return model_files.download(store, mv.files, dest_dir)


def set_tags(store: ArtifactStore, name: str, version: int, tags: Mapping[str, str | None]) -> ModelVersion:
    """Set (or, with a None value, remove) tags of ``name@version``. The version record stays
    untouched; tags live in their own record. Concurrent set_tags on one version: last wins."""
    mv = get_model(store, name, version)
    current = dict(mv.tags)
    for k, val in tags.items():
        if val is None:
            current.pop(k, None)
        else:
            current[str(k)] = str(val)
    store.write_record(v.tags_key(KIND, name, mv.version), json.dumps(current, sort_keys=True).encode())
    return dataclasses.replace(mv, tags=current)


def search_models(store: ArtifactStore, query: Mapping[str, str],
                  problems: list[str] | None = None) -> list[ModelVersion]:
    """Versions whose current tags contain every ``key: value`` of ``query``
    (the keys ``name`` and ``flavor`` match those fields instead). ``problems``: as for list_versions."""
    out = []
    for name in list_models(store):
        if "name" in query and query["name"] != name:
            continue
        for mv in list_versions(store, name, problems):
            fields = {**mv.tags, "name": mv.name, "flavor": mv.flavor}
            if all(fields.get(k) == str(val) for k, val in query.items()):
                out.append(mv)
    return out
