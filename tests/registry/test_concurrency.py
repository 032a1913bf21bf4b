"""Two processes registering at once never get the same version number, nor leave a gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops.registry.models import list_versions, register_model
from mlops.store.local import LocalStore
from mlops.store.protocol import ArtifactStore
from mlops.store.s3 import S3Store
from tests.race import race

PER_PROCESS = 10


def _open(spec: tuple[str, tuple[Any, ...]]) -> ArtifactStore:
    kind, args = spec
    return LocalStore(Path(args[0])) if kind == "local" else S3Store(*args)


def _registrar(spec: tuple[str, tuple[Any, ...]], me: str, model: str, barrier: Any, results: Any) -> None:
    store = _open(spec)
    barrier.wait()
    got = [register_model(store, "m", [Path(model)], "onnx", {"proc": me, "i": i}).version
           for i in range(PER_PROCESS)]
    results.put((me, got))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_registrations_get_distinct_consecutive_versions(kind: str, tmp_path: Path,
                                                                      iris_onnx: Path,
                                                                      request: pytest.FixtureRequest) -> None:
    if kind == "local":
        spec: tuple[str, tuple[Any, ...]] = ("local", (str(tmp_path / "store"),))
    else:
        spec = ("s3", (request.getfixturevalue("s3_bucket"), "", request.getfixturevalue("s3_endpoint"),
                       "us-east-1"))
    got = race(_registrar, lambda me: (spec, me, str(iris_onnx)))
    everything = got["a"] + got["b"]
    assert sorted(everything) == list(range(1, 2 * PER_PROCESS + 1)), got
    assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])
    assert min(got["a"]) < max(got["b"]) and min(got["b"]) < max(got["a"]), "the processes never overlapped"
    stored = list_versions(_open(spec), "m")
    assert [m.version for m in stored] == list(range(1, 2 * PER_PROCESS + 1))
    owners = {(m.metrics["proc"], m.metrics["i"]): m.version for m in stored}
    assert len(owners) == 2 * PER_PROCESS  # every registration is its own version
    for me in "ab":
        assert [owners[(me, i)] for i in range(PER_PROCESS)] == got[me]
