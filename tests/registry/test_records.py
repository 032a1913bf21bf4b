"""Registry records are immutable values that survive a JSON round trip unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from mlops.errors import RegistryError
from mlops.registry.records import DatasetVersion, FileEntry, Lineage, ModelVersion, Signature, TensorSpec

LINEAGE = Lineage("abc123", "Ada <ada@example.com>", "train on more data", False, "train", "run-7",
                  {"iris": "d" * 64}, "e" * 64, "ada@host", "2026-11-23T10:00:00Z")


def test_model_version_round_trip() -> None:
    mv = ModelVersion("iris", 3, "onnx", (FileEntry("model.onnx", "a" * 64, 123),),
                      Signature((TensorSpec("x", "tensor(float)", (None, "batch", 4)),),
                                (TensorSpec("label", "tensor(int64)", (None,)),)),
                      {"accuracy": 0.97}, {"team": "a"}, LINEAGE, "first model", "f" * 64)
    text = mv.to_json()
    assert ModelVersion.from_json(text) == mv
    assert ModelVersion.from_json(text).to_json() == text  # canonical
    assert '"registered_at": "2026-11-23T10:00:00Z"' in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        mv.version = 4  # type: ignore[misc]


def test_dataset_version_round_trip() -> None:
    dv = DatasetVersion("iris", 1, "directory", (FileEntry("a/b.csv", "a" * 64, 10),), "b" * 64, 10, LINEAGE)
    assert DatasetVersion.from_json(dv.to_json()) == dv


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", ""])
def test_file_paths_cannot_escape(bad: str) -> None:
    with pytest.raises(RegistryError, match="relative POSIX path"):
        FileEntry(bad, "a" * 64, 1)


def test_malformed_records_are_registry_errors() -> None:
    with pytest.raises(RegistryError, match="not valid JSON"):
        ModelVersion.from_json(b"{nope")
    with pytest.raises(RegistryError, match="malformed model version record: field 'version' is missing"):
        ModelVersion.from_json(b'{"name": "x"}')
    with pytest.raises(RegistryError, match="unknown lineage field"):
        Lineage.from_dict({"git_sha": "x"})
