"""Fuzzing the readers of untrusted input: random YAML into the spec loader, random JSON into the
record readers. Whatever comes in, what comes out is a value or an MlopsError, never another exception.

A seeded, bounded generator (no extra dependency): each run tries the same few thousand inputs, so a
failure reproduces; the seed is in the test id.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.apply.state import STATE_KEY, read_state
from mlops.errors import MlopsError
from mlops.pipelines.cache import StepCache
from mlops.pipelines.record import RunRecord, list_runs, load_run, record_key
from mlops.registry import versions
from mlops.registry.datasets import get_dataset, list_latest_datasets
from mlops.registry.models import get_model, list_latest, list_versions
from mlops.spec.loader import load
from mlops.spec.source import SourceFile, git_blob_sha
from mlops.spec.yamlpos import YamlSyntaxError, load_yaml
from mlops.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [p for p in [ROOT / "mlops.yaml", *sorted(ROOT.glob("*/*.yaml"))] if p.parts[-2] in
            ("environments", "pipelines", "models", "endpoints", ROOT.name)]
YAML_BITS = ["[", "]", "{", "}", ":", ": ", "- ", "&a ", "*a", "&b ", "*b", "!!binary ", "!!set ", "!!python/name:os ",
             "<<: *a\n", "? ", "|\n", ">-\n", "'", '"', "#", "%YAML 1.1\n", "---\n", "...\n", "\t", "\n", "  ", ",",
             "!!map ", "!!seq ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!timestamp ", "!!str ", "!!omap ",
             "~", "null", "1e999", "0x" + "f" * 30, ".nan", "2024-01-01", "yes", "\\u0000", "\x00", "\ufeff", "é"]


def seeds(n: int) -> list[int]:
    return list(range(n))


# -- generators ------------------------------------------------------------------------------------
def json_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] * 2 if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 2**63, -(2**70), rng.randint(-1000, 10**6)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, 3.0])
    if kind == "str":
        return rng.choice(["", "x", "../etc", "a" * 300, "runs/p/x.json", "sha256:" + "0" * 64, "0" * 64, "\x00é"])
    if kind == "list":
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["name", "version", "kind", "steps", "files", "x", "serial", "tags", "lineage", "outputs",
                        "status", "run_id", "pipeline", "path", "digest", "size", "layout", "flavor", "key"]):
            json_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A valid record with a few fields replaced, removed or added."""
    if isinstance(value, dict) and value:
        out = dict(value)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(sorted(out)) if out else "x"
            roll = rng.random()
            if roll < 0.3:
                out.pop(key, None)
            elif roll < 0.6 and depth < 3:
                out[key] = mutate(rng, out.get(key), depth + 1)
            else:
                out[key] = json_value(rng, depth + 1)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        return value[:i] + [mutate(rng, value[i], depth + 1)] + value[i + 1:]
    return json_value(rng, depth)


def raw_bytes(rng: random.Random, good: bytes) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    if roll < 0.3:
        return good[: rng.randrange(len(good) + 1)]
    if roll < 0.4:
        return b"[" * 5000 + b"]" * 5000
    return json.dumps(mutate(rng, json.loads(good))).encode()


def yaml_text(rng: random.Random) -> str:
    text = rng.choice(EXAMPLES).read_text()
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(text) + 1)
        roll = rng.random()
        if roll < 0.6:
            text = text[:i] + rng.choice(YAML_BITS) + text[i:]
        elif roll < 0.8:
            text = text[:i] + text[i + rng.randint(1, 20):]
        else:
            lines = text.splitlines(keepends=True)
            j = rng.randrange(len(lines))
            text = "".join(lines[:j] + [lines[j]] * rng.randint(2, 4) + lines[j + 1:])
    return text


# -- targets ---------------------------------------------------------------------------------------
def only_mlops_errors(fn: Callable[[], Any]) -> None:
    """Run ``fn``: our errors are fine answers to bad input, any other exception fails the test."""
    with contextlib.suppress(MlopsError):
        fn()


class MemorySource:
    """The SpecSource protocol over a dict of path -> bytes."""

    label = "fuzz"

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def spec_files(self) -> Iterator[SourceFile]:
        for path, data in sorted(self.files.items()):
            yield SourceFile(path, git_blob_sha(data), lambda data=data: data, len(data))

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def digest(self, path: str) -> str | None:
        data = self.files.get(path)
        return None if data is None else git_blob_sha(data)

    def is_file(self, path: str) -> bool:
        return path in self.files

    def is_dir(self, path: str) -> bool:
        return any(p.startswith(path.rstrip("/") + "/") for p in self.files)

    def resolve(self, path: str, write: bool = False) -> str:
        return path  # no symbolic links in memory

    def tracked(self, paths: Iterable[str]) -> dict[str, str]:
        return {}


@pytest.mark.parametrize("seed", seeds(6))
def test_random_yaml_gives_a_document_or_a_located_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        text = yaml_text(rng)
        try:
            doc = load_yaml(text.encode("utf-8", "surrogatepass") if rng.random() < 0.5 else text,
                            pure_python=rng.random() < 0.3)
        except YamlSyntaxError as e:
            assert e.line >= 1 and e.column >= 1 and str(e)
            continue
        json.dumps(doc.data)  # whatever was accepted is JSON-serialisable
        for _path, line, col, message in doc.problems:
            assert line >= 1 and col >= 1 and message


@pytest.mark.parametrize("seed", seeds(6))
def test_random_spec_repositories_load_or_raise_spec_errors(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(25):
        files = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in EXAMPLES}
        for path in rng.sample(sorted(files), rng.randint(1, 3)):
            files[path] = yaml_text(rng).encode("utf-8", "surrogatepass")
        only_mlops_errors(lambda: load(MemorySource(files)))  # noqa: B023 - called at once


def _good_run() -> dict[str, Any]:
    return {"run_id": "20260101T000000000000Z-aaaaaa", "pipeline": "p", "status": "succeeded",
            "started": "2026-01-01T00:00:00.000+00:00", "finished": "2026-01-01T00:00:01.000+00:00",
            "git_commit": "0" * 40, "git_dirty": False,
            "steps": [{"name": "s", "status": "ran", "duration": 1.5, "command": ["python", "x.py"],
                       "inputs": {"i": "0" * 64}, "outputs": {"o": "1" * 64}, "metrics": {"acc": 0.9}}]}


def _good_model() -> dict[str, Any]:
    return {"kind": "ModelVersion", "name": "m", "version": 1, "flavor": "onnx",
            "files": [{"path": "model.onnx", "digest": "0" * 64, "size": 3}],
            "signature": {"inputs": [{"name": "x", "dtype": "tensor(float)", "shape": [None, 4]}], "outputs": []},
            "metrics": {"acc": 0.9}, "tags": {"t": "v"}, "lineage": {"git_commit": "0" * 40, "input_digests": {}},
            "description": "", "fingerprint": "f" * 64}


def _good_dataset() -> dict[str, Any]:
    return {"kind": "DatasetVersion", "name": "d", "version": 1, "layout": "file",
            "files": [{"path": "d.csv", "digest": "0" * 64, "size": 3}], "digest": "0" * 64, "size": 3,
            "lineage": {}, "description": ""}


@pytest.mark.parametrize("seed", seeds(6))
def test_random_records_are_values_or_mlops_errors(seed: int) -> None:
    rng = random.Random(2000 + seed)
    run_raw = json.dumps(_good_run()).encode()
    model_raw = json.dumps(_good_model()).encode()
    dataset_raw = json.dumps(_good_dataset()).encode()
    state_raw = json.dumps({"serial": 3, "last_applied_commit": "0" * 40}).encode()
    for _ in range(60):
        store = MemoryStore()
        store.write_record(record_key("p", "20260101T000000000000Z-aaaaaa"), raw_bytes(rng, run_raw))
        store.write_record(record_key("p", "20260102T000000000000Z-bbbbbb"), run_raw)
        store.write_record(versions.version_key("models", "m", 1), raw_bytes(rng, model_raw))
        store.write_record(versions.tags_key("models", "m", 1), raw_bytes(rng, b'{"a": "b"}'))
        store.write_record(versions.fingerprint_key("models", "m", "f" * 64), raw_bytes(rng, b'{"version": 1}'))
        store.write_record(versions.version_key("datasets", "d", 1), raw_bytes(rng, dataset_raw))
        store.write_record(STATE_KEY, raw_bytes(rng, state_raw))
        store.write_record("pipelines/cache/k.json", raw_bytes(rng, json.dumps(
            {"key": "k", "step": "s", "outputs": {"o": {"kind": "file", "digest": "0" * 64}}}).encode()))

        _read_everything(store, rng)


def _read_everything(store: MemoryStore, rng: random.Random) -> None:
    problems: list[str] = []
    assert len(list_runs(store, "p", problems)) + len(problems) == 2
    assert len(list_latest(store, problems)) <= 1 and len(list_latest_datasets(store, problems)) <= 1
    for fn in (lambda: list_runs(store), lambda: load_run(store, "p", "20260101T000000000000Z-aaaaaa"),
               lambda: get_model(store, "m"), lambda: list_versions(store, "m"), lambda: get_dataset(store, "d"),
               lambda: versions.lookup_fingerprint(store, "models", "m", "f" * 64), lambda: read_state(store),
               lambda: StepCache(store).lookup("s", "k"), lambda: RunRecord.from_json(mutate(rng, _good_run()))):
        only_mlops_errors(fn)
