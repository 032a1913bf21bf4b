"""The model registry against every store: register, read, tag, search, download, errors."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from mlops.errors import IntegrityError, RegistryError
from mlops.registry import versions
from mlops.registry.lineage import git_lineage
from mlops.registry.models import (
    download_model,
    get_model,
    list_models,
    list_versions,
    register_model,
    search_models,
    set_tags,
)
from mlops.store.digest import sha256_file
from mlops.store.local import LocalStore
from mlops.store.memory import MemoryStore
from mlops.store.protocol import ArtifactStore
from mlops.store.s3 import S3Store
from tests.registry.conftest import make_repo


def test_register_onnx_model_with_lineage(store: ArtifactStore, iris_onnx: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", message="Train iris v1")
    lineage = {**git_lineage(repo), "pipeline": "train", "pipeline_run": "run-1",
               "input_digests": {"iris": "d" * 64}, "environment_identity": "e" * 64}
    mv = register_model(store, "iris", [iris_onnx], flavor="onnx", metrics={"accuracy": 0.97},
                        tags={"team": "a"}, lineage=lineage, description="first")
    assert (mv.name, mv.version, mv.flavor) == ("iris", 1, "onnx")
    assert [(f.path, f.digest, f.size) for f in mv.files] == [
        ("iris.onnx", sha256_file(iris_onnx), iris_onnx.stat().st_size)]
    assert mv.signature is not None and mv.signature.inputs[0].shape == (None, 4)
    assert mv.lineage.git_message == "Train iris v1" and mv.lineage.git_author == "Ada Lovelace <ada@example.com>"
    assert mv.lineage.pipeline_run == "run-1" and mv.lineage.input_digests == {"iris": "d" * 64}
    assert mv.lineage.registered_at and mv.lineage.registered_at.endswith("Z") and mv.lineage.registered_by
    assert get_model(store, "iris") == mv == get_model(store, "iris", 1)
    # the record is where the layout says, as canonical JSON
    assert store.read_record("registry/models/iris/versions/0000000001.json") == mv.to_json().encode()


def test_same_content_is_registered_once(store: ArtifactStore, iris_onnx: Path) -> None:
    lineage = {"git_commit": "c1"}
    first = register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.9}, lineage=lineage)
    again = register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.9}, lineage=lineage)
    assert again == first
    assert first.created and not again.created
    assert register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.91}, lineage=lineage).version == 2
    # the same bytes and metrics from another commit are the same model, not a new version
    assert register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.9}, lineage={"git_commit": "c2"}) == first
    assert [m.version for m in list_versions(store, "iris")] == [1, 2]


def test_lost_index_entry_is_repaired(store: ArtifactStore, iris_onnx: Path) -> None:
    # As if the process died between creating the version record and its fingerprint entry.
    mv = register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.9})
    store.delete_record(versions.fingerprint_key("models", "iris", mv.fingerprint))
    assert register_model(store, "iris", [iris_onnx], "onnx", {"acc": 0.9}).version == 1
    assert store.read_record(versions.fingerprint_key("models", "iris", mv.fingerprint)) is not None


def test_files_and_directories(store: ArtifactStore, iris_onnx: Path, tmp_path: Path) -> None:
    extra = tmp_path / "bundle"
    (extra / "vocab").mkdir(parents=True)
    (extra / "vocab" / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    (extra / "config.json").write_text("{}")
    mv = register_model(store, "iris", [iris_onnx, extra], "onnx")
    assert [f.path for f in mv.files] == ["config.json", "iris.onnx", "vocab/labels.txt"]
    out = download_model(store, "iris", None, tmp_path / "dl")
    assert sorted(p.relative_to(tmp_path / "dl").as_posix() for p in out) == [
        "config.json", "iris.onnx", "vocab/labels.txt"]
    assert (tmp_path / "dl" / "iris.onnx").read_bytes() == iris_onnx.read_bytes()
    assert (tmp_path / "dl" / "vocab" / "labels.txt").read_text().startswith("setosa")


def test_download_refuses_tampered_files(store: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"weights")
    mv = register_model(store, "m", [f], "raw")
    if isinstance(store, LocalStore):
        store.blob_path(mv.files[0].digest).write_bytes(b"evil!!!")
    elif isinstance(store, MemoryStore):
        store.blobs[mv.files[0].digest] = b"evil!!!"
    else:
        assert isinstance(store, S3Store)
        boto3.client("s3", endpoint_url=store.endpoint_url).put_object(
            Bucket=store.bucket, Key=store.blob_key(mv.files[0].digest), Body=b"evil!!!")
    with pytest.raises(IntegrityError, match=mv.files[0].digest):
        download_model(store, "m", 1, tmp_path / "dl")
    assert not (tmp_path / "dl" / "weights.bin").exists()


def test_tags_are_mutable_the_version_record_is_not(store: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"1")
    mv = register_model(store, "m", [f], "raw", tags={"stage": "dev", "team": "a"})
    before = store.read_record(versions.version_key("models", "m", 1))
    tagged = set_tags(store, "m", 1, {"stage": "prod", "owner": "ada", "team": None})
    assert tagged.tags == {"stage": "prod", "owner": "ada"}
    assert get_model(store, "m", 1).tags == {"stage": "prod", "owner": "ada"}
    assert store.read_record(versions.version_key("models", "m", 1)) == before
    assert get_model(store, "m", 1) == tagged and tagged.fingerprint == mv.fingerprint


def test_list_and_search(store: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    for name, metric, tags in [("a", 1, {"stage": "prod"}), ("a", 2, {"stage": "dev"}), ("b", 1, {"stage": "prod"}),
                               ("b", 2, {})]:
        register_model(store, name, [f], "raw", {"m": metric}, tags=tags)
    assert list_models(store) == ["a", "b"]
    assert [m.ref for m in search_models(store, {"stage": "prod"})] == ["a@1", "b@1"]
    assert [m.ref for m in search_models(store, {"stage": "prod", "name": "b"})] == ["b@1"]
    assert [m.ref for m in search_models(store, {"flavor": "raw"})] == ["a@1", "a@2", "b@1", "b@2"]
    assert search_models(store, {"stage": "qa"}) == []


def test_unknown_names_and_versions(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no model named 'ghost' in"):
        get_model(store, "ghost")
    with pytest.raises(RegistryError, match="no model named 'ghost'"):
        list_versions(store, "ghost")
    f = tmp_path / "w.bin"
    for i in range(3):
        f.write_bytes(bytes([i]))
        register_model(store, "m", [f], "raw")
    with pytest.raises(RegistryError, match=r"model 'm' has no version 7 \(it has versions 1-3\)"):
        get_model(store, "m", 7)
    with pytest.raises(RegistryError, match="invalid version 0"):
        set_tags(store, "m", 0, {"a": "b"})
    with pytest.raises(RegistryError, match="invalid model name"):
        register_model(store, "../x", [f], "raw")


def test_bad_registrations_create_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    with pytest.raises(RegistryError, match="missing.onnx: no such file"):
        register_model(store, "m", [tmp_path / "missing.onnx"], "onnx")
    with pytest.raises(RegistryError, match="flavor onnx needs an .onnx file"):
        register_model(store, "m", [f], "onnx")
    with pytest.raises(RegistryError, match="two files would be named 'w.bin'"):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "w.bin").write_bytes(b"y")
        register_model(store, "m", [f, tmp_path / "d"], "raw")
    assert list(store.list_records("registry/")) == []


class FailingUploads(MemoryStore):
    """A store whose n-th upload fails, as if the process died there."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.uploads = 0

    def put_file(self, path: Path) -> str:
        self.uploads += 1
        if self.uploads == self.fail_at:
            raise OSError("disk on fire")
        return super().put_file(path)


def test_crash_during_uploads_leaves_no_record(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}.bin")
        files[-1].write_bytes(bytes([i]) * 10)
    store = FailingUploads(fail_at=3)
    with pytest.raises(OSError):
        register_model(store, "m", files, "raw")
    assert len(store.blobs) == 2  # unreferenced blobs only
    assert list(store.list_records("")) == []
    store.fail_at = 0
    assert register_model(store, "m", files, "raw").version == 1
