"""Two processes registering at once never get the same version number, nor leave a gap."""

from __future__ import annotations

import time
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
    stored = list_versions(_open(spec), "m")
    assert [m.version for m in stored] == list(range(1, 2 * PER_PROCESS + 1))
    owners = {(m.metrics["proc"], m.metrics["i"]): m.version for m in stored}
    assert len(owners) == 2 * PER_PROCESS  # every registration is its own version
    for me in "ab":
        assert [owners[(me, i)] for i in range(PER_PROCESS)] == got[me]


def _claimer(spec: tuple[str, tuple[Any, ...]], me: str, barrier: Any, results: Any) -> None:
    from mlops.registry.versions import create_next_version

    store = _open(spec)
    barrier.wait()
    got = []
    for _ in range(PER_PROCESS):
        got.append(create_next_version(store, "models", "m", lambda n: f"{me} {n}".encode()))
        time.sleep(0.01)  # as registration's own work would: gives the other process its turns
    results.put((me, got))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_racing_version_claims_never_share_a_number(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Below the registration lock, claiming a number is itself atomic (create-if-absent), with no gaps."""
    if kind == "local":
        spec: tuple[str, tuple[Any, ...]] = ("local", (str(tmp_path / "store"),))
    else:
        spec = ("s3", (request.getfixturevalue("s3_bucket"), "claims", request.getfixturevalue("s3_endpoint"),
                       "us-east-1"))
    got = race(_claimer, lambda me: (spec, me))
    assert sorted(got["a"] + got["b"]) == list(range(1, 2 * PER_PROCESS + 1)), got
    assert min(got["a"]) < max(got["b"]) and min(got["b"]) < max(got["a"]), "the processes never overlapped"
    store = _open(spec)
    from mlops.registry.versions import version_key

    for me in "ab":
        for n in got[me]:
            assert store.read_record(version_key("models", "m", n)) == f"{me} {n}".encode()


def _same_content(spec: tuple[str, tuple[Any, ...]], me: str, model: str, barrier: Any, results: Any) -> None:
    store = _open(spec)
    barrier.wait()
    got = [register_model(store, f"m{i}", [Path(model)], "onnx", {"accuracy": 0.9}) for i in range(PER_PROCESS)]
    results.put((me, [(mv.version, mv.created) for mv in got]))


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_registrations_of_identical_content_give_one_version(kind: str, tmp_path: Path,
                                                                          iris_onnx: Path,
                                                                          request: pytest.FixtureRequest) -> None:
    """The content check and the version claim are one atomic step: identical content racing is one version."""
    if kind == "local":
        spec: tuple[str, tuple[Any, ...]] = ("local", (str(tmp_path / "store"),))
    else:
        spec = ("s3", (request.getfixturevalue("s3_bucket"), "same", request.getfixturevalue("s3_endpoint"),
                       "us-east-1"))
    got = race(_same_content, lambda me: (spec, me, str(iris_onnx)))
    for i in range(PER_PROCESS):
        a, b = got["a"][i], got["b"][i]
        assert a[0] == b[0] == 1, f"model m{i}: {a} vs {b}"
        assert sorted([a[1], b[1]]) == [False, True], f"model m{i}: exactly one registration creates it"
        assert [m.version for m in list_versions(_open(spec), f"m{i}")] == [1]
