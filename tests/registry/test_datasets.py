"""Dataset versions: files and directories, content-identified, downloadable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlops.errors import RegistryError
from mlops.registry.datasets import (
    download_dataset,
    get_dataset,
    list_dataset_versions,
    list_datasets,
    register_dataset,
)
from mlops.store.protocol import ArtifactStore


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_directory_dataset(store: ArtifactStore, tmp_path: Path) -> None:
    data = _tree(tmp_path / "iris", {"train.csv": b"1,2\n", "test/part-0.csv": b"3,4\n"})
    dv = register_dataset(store, "iris", data, lineage={"git_commit": "abc"}, description="iris split")
    assert (dv.version, dv.kind, dv.size) == (1, "directory", 8)
    assert [f.path for f in dv.files] == ["test/part-0.csv", "train.csv"]
    manifest = "".join(f"{hashlib.sha256(b).hexdigest()}  {p}\n"
                       for p, b in [("test/part-0.csv", b"3,4\n"), ("train.csv", b"1,2\n")])
    assert dv.digest == hashlib.sha256(manifest.encode()).hexdigest()  # == `sha256sum` listing, hashed
    assert get_dataset(store, "iris") == dv and dv.lineage.git_commit == "abc"

    again = register_dataset(store, "iris", data)
    assert again == dv and dv.created and not again.created  # same content: same version
    (data / "train.csv").write_bytes(b"1,2\n5,6\n")
    dv2 = register_dataset(store, "iris", data)
    assert dv2.version == 2 and dv2.digest != dv.digest

    out = tmp_path / "dl"
    download_dataset(store, "iris", 1, out)
    assert (out / "train.csv").read_bytes() == b"1,2\n" and (out / "test" / "part-0.csv").read_bytes() == b"3,4\n"
    assert [d.version for d in list_dataset_versions(store, "iris")] == [1, 2]


def test_file_dataset(store: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "wine.csv"
    f.write_bytes(b"a,b\n1,2\n")
    dv = register_dataset(store, "wine", f)
    assert dv.kind == "file" and dv.digest == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert download_dataset(store, "wine", None, tmp_path / "dl") == [tmp_path / "dl" / "wine.csv"]
    assert list_datasets(store) == ["wine"]


def test_dataset_errors(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no dataset named 'nope'"):
        get_dataset(store, "nope")
    with pytest.raises(RegistryError, match="no such file or directory"):
        register_dataset(store, "x", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="directory has no files"):
        register_dataset(store, "x", tmp_path / "empty")
