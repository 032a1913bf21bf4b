"""The on-disk parse cache is only a cache: an entry of the wrong shape or type is parsed afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.spec import loader
from mlops.spec.cache import open_cache
from mlops.spec.loader import load
from mlops.spec.source import open_source
from tests.gitrepo import example_repo


@pytest.mark.parametrize("damage", [
    lambda kind, name, data: [kind, name, {**data, "steps": 5, "source": "x", "deployments": [1], "stages": None}],
    lambda kind, name, data: ["Model" if kind != "Model" else "Endpoint", name, {**data, "kind": "Model"}],
])
def test_damaged_parse_cache_entries_are_parsed_again(tmp_path: Path, damage: object) -> None:
    repo = example_repo(tmp_path / "repo")
    loader._PARSE_CACHE.clear()
    cache = open_cache(repo.path)
    expected = load(open_source(repo.path, None), cache).specs
    cache.save()
    path = repo.path / ".mlops/cache/specs.json"
    raw = json.loads(path.read_text())
    assert raw["entries"]
    raw["entries"] = {k: damage(*v) for k, v in raw["entries"].items()}  # type: ignore[operator]
    path.write_text(json.dumps(raw))
    loader._PARSE_CACHE.clear()
    assert load(open_source(repo.path, None), open_cache(repo.path)).specs == expected
    loader._PARSE_CACHE.clear()  # nothing damaged stays behind for other tests
