"""Dataset versions: a file or a directory, stored as blobs and recorded immutably.

A dataset version is identified by its content digest (see DatasetVersion): registering
content that is already a version of the dataset returns that version.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops import paths
from mlops.errors import PathError, RegistryError
from mlops.registry import files as dataset_files
from mlops.registry import versions as v
from mlops.registry.models import make_lineage
from mlops.registry.records import DatasetVersion, FileEntry, Lineage
from mlops.store.protocol import ArtifactStore

KIND = "datasets"


def manifest_digest(files: tuple[FileEntry, ...]) -> str:
    """sha256 of ``"<digest>  <path>\\n"`` lines sorted by path (what ``sha256sum`` prints)."""
    text = "".join(f"{f.digest}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(text.encode()).hexdigest()


def register_dataset(store: ArtifactStore, name: str, path: Path,
                     lineage: Lineage | Mapping[str, Any] | None = None, description: str = "",
                     root: Path | None = None, expected_digest: str | None = None) -> DatasetVersion:
    """Register the file or directory at ``path`` as the next version of ``name``
    (or return the existing version with the same content; ``created`` on the result says which).

    With ``root`` (a dataset a spec names), ``path`` is confined to that repository: a link
    that leads out of it is refused, so a spec cannot make us copy host data. ``expected_digest``
    (a pin, ``sha256:HEX`` or ``HEX``) is checked before any version is claimed: content that does
    not match is refused with RegistryError and nothing is registered.
    """
    v.check_name(name, "dataset")
    path = Path(path)
    real = path if root is None else _real(root, path, name)
    if not real.exists():
        raise RegistryError(f"dataset {name!r}: {path}: no such file or directory")
    kind = "directory" if real.is_dir() else "file"
    entries = dataset_files.upload(store, dataset_files.expand([path], root), root)
    digest = entries[0].digest if kind == "file" else manifest_digest(entries)
    if expected_digest is not None and digest != expected_digest.removeprefix("sha256:"):
        raise RegistryError(f"dataset {name!r}: the content of {path} has digest sha256:{digest}, not the pinned "
                            f"{expected_digest}; nothing was registered")
    lin = make_lineage(lineage)
    size = sum(f.size for f in entries)

    def render(n: int) -> bytes:
        return DatasetVersion(name, n, kind, entries, digest, size, lin, description).to_json().encode()

    with v.registering(store, KIND, name, lin.registered_by or "unknown"):
        n = v.lookup_fingerprint(store, KIND, name, digest)
        if n is not None:
            return get_dataset(store, name, n)
        numbers = v.version_numbers(store, KIND, name)
        if numbers:  # repair: a crash between the version record and its index entry
            latest = get_dataset(store, name, numbers[-1])
            if latest.digest == digest:
                v.index_fingerprint(store, KIND, name, digest, latest.version)
                return latest
        n = v.create_next_version(store, KIND, name, render)
        v.index_fingerprint(store, KIND, name, digest, n)
    return dataclasses.replace(get_dataset(store, name, n), created=True)


def _real(root: Path, path: Path, name: str) -> Path:
    if path.is_absolute() and not path.is_relative_to(root):
        raise RegistryError(f"dataset {name!r}: {path} is outside the repository {root}")
    rel = path.relative_to(root) if path.is_absolute() else path
    try:
        return paths.resolve_inside(Path(root), rel.as_posix())
    except PathError as e:
        raise RegistryError(f"dataset {name!r}: {e}") from None


def get_dataset(store: ArtifactStore, name: str, version: int | None = None) -> DatasetVersion:
    """``name@version`` (the latest if version is None)."""
    n, raw = v.read_version(store, KIND, name, version, "dataset")
    return v.parse_version(store, KIND, name, n, raw, DatasetVersion.from_json)


def list_datasets(store: ArtifactStore) -> list[str]:
    """Names of every registered dataset, sorted."""
    return v.asset_names(store, KIND)


def list_dataset_versions(store: ArtifactStore, name: str) -> list[DatasetVersion]:
    """Every version of ``name``, oldest first."""
    numbers = v.version_numbers(store, KIND, v.check_name(name, "dataset"))
    if not numbers:
        raise RegistryError(f"no dataset named {name!r} in {store.url}")
    return [get_dataset(store, name, n) for n in numbers]


def list_latest_datasets(store: ArtifactStore, problems: list[str]) -> list[tuple[DatasetVersion, int]]:
    """The latest readable version of every dataset, with its number of versions. Damaged records
    are skipped and described in ``problems``."""
    out = []
    for name in list_datasets(store):
        try:
            latest, count = v.latest_readable(store, KIND, name, get_dataset, problems)
        except RegistryError as e:
            problems.append(str(e))
            continue
        if latest is not None:
            out.append((latest, count))
    return out


def download_dataset(store: ArtifactStore, name: str, version: int | None, dest_dir: Path) -> list[Path]:
    """Write the dataset's files into ``dest_dir`` (a file dataset as ``dest_dir/<file name>``)."""
    dv = get_dataset(store, name, version)
    return dataset_files.download(store, dv.files, dest_dir)
