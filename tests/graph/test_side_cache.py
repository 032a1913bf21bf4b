"""Results cached per git tree (``mlops.graph.sidecache``) never change an answer.

A plan read from the cache equals one computed from scratch; a head derived from a cached tree is
validated as if read afresh (a renamed environment, a broken lockfile, a deleted file a spec names
are still errors); a damaged cache is a cold cache, never an error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlops.errors import SpecError
from mlops.graph import compare as compare_module
from mlops.graph import sidecache
from mlops.graph.compare import compare, read_side
from mlops.plan.build import make_plan
from mlops.plan.live import LiveState
from mlops.spec import loader
from tests.gitrepo import Repo, example_repo, mlops

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def plan_json(repo: Repo, base: str, head: str) -> str:
    """The plan from ``base`` to ``head`` as `mlops plan --no-refresh` makes it (head validated first)."""
    head_side = read_side(repo.path, head)
    cmp = compare(repo.path, base, head, head_side)
    return make_plan(cmp, LiveState(refreshed=False), head, NOW, tree=repo.git("rev-parse", f"{head}^{{tree}}")).to_json()


def forget(repo: Repo) -> None:
    """Nothing cached, on disk or in this process."""
    shutil.rmtree(repo.path / ".mlops" / "cache", ignore_errors=True)
    loader._PARSE_CACHE.clear()
    sidecache._MEMO.clear()


def uncached(repo: Repo, base: str, head: str) -> str:
    forget(repo)
    try:
        return plan_json(repo, base, head)
    finally:
        forget(repo)


def sides(repo: Repo) -> list[Path]:
    folder = repo.path / ".mlops" / "cache" / "sides"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []  # trees and pairs


def no_loading(monkeypatch: pytest.MonkeyPatch, no_diffing: bool = False) -> None:
    """From here on, reading a commit's specs from scratch (or comparing two graphs) fails the test."""
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a cached tree was loaded again, or a cached change set worked out again")
    monkeypatch.setattr(compare_module, "load", refuse)
    if no_diffing:
        monkeypatch.setattr(compare_module, "diff_graphs", refuse)


def test_a_cached_plan_equals_an_uncached_one_and_needs_no_loading(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("pipelines/wine/train.py", "import argparse", "import argparse\nimport os")
    head = repo.commit("touch the training step")
    expected = uncached(repo, base, head)
    assert "pipelines/wine/train.py changed" in expected
    assert plan_json(repo, base, head) == expected  # cold: computes and stores both trees
    assert len(sides(repo)) == 3  # two trees, one change set
    loader._PARSE_CACHE.clear()
    sidecache._MEMO.clear()
    base_specs = loader.load(loader.open_source(repo.path, base)).specs
    with monkeypatch.context() as m:
        no_loading(m, no_diffing=True)
        assert plan_json(repo, base, head) == expected  # warm: the head tree and the change set from the cache
        cmp = compare(repo.path, base, head)
        assert cmp.base.specs == base_specs and "model/wine-classifier" in cmp.base.graph.assets  # read on demand
    sidecache._MEMO.clear()
    for pair in (repo.path / ".mlops" / "cache" / "sides").glob("pair-*"):
        pair.write_bytes(b"damaged")  # a cold pair: the change set is worked out again, from the cached trees
    no_loading(monkeypatch)
    assert plan_json(repo, base, head) == expected
    assert plan_json(repo, head, head) == uncached_plan_of_nothing(repo, head)


def uncached_plan_of_nothing(repo: Repo, head: str) -> str:
    return make_plan(compare(repo.path, head, head, read_side(repo.path, head)), LiveState(refreshed=False), head, NOW,
                     tree=repo.git("rev-parse", f"{head}^{{tree}}")).to_json()


def test_a_new_head_that_changes_only_step_code_is_derived_from_the_cached_base(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    base = repo.git("rev-parse", "HEAD")
    plan_json(repo, base, base)  # the base tree is cached, validated
    repo.write("pipelines/wine/helper.py", "VALUE = 1\n")
    repo.edit("pipelines/wine/train.py", "import argparse", "import argparse\n\nimport helper")
    with_helper = repo.commit("the training step imports a helper")  # a new file: not derivable, read afresh
    plan_json(repo, base, with_helper)
    repo.write("pipelines/wine/helper.py", "VALUE = 2\n")
    head = repo.commit("change the helper only")
    expected = uncached(repo, with_helper, head)
    plan_json(repo, base, with_helper)  # caches with_helper again (uncached() cleared everything)
    sidecache._MEMO.clear()
    with monkeypatch.context() as m:
        no_loading(m)
        assert plan_json(repo, with_helper, head) == expected  # head derived: only the pipeline's steps recomputed
    assert "pipelines/wine/helper.py changed" in expected
    assert plan_json(repo, with_helper, head) == expected


def test_renaming_an_environment_others_use_is_an_error_on_the_cached_path(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    plan_json(repo, base, base)
    repo.edit("environments/sklearn.yaml", "name: sklearn", "name: sklearn2")
    head = repo.commit("rename the training environment")
    for _ in range(2):  # and again, once the base and this failure could have been cached
        with pytest.raises(SpecError) as e:
            plan_json(repo, base, head)
        assert "environment 'sklearn' does not exist" in " ".join(str(d) for d in e.value.diagnostics)
    out = mlops(repo, "plan", "--base", base, "--head", head, "--no-refresh", check=False)
    assert out.returncode != 0 and "environment 'sklearn' does not exist" in out.stderr


def test_a_broken_lockfile_in_a_new_head_is_an_error_although_only_it_changed(repo: Repo) -> None:
    repo.edit("environments/sklearn.yaml", "system_site_packages: true", "system_site_packages: true\nlockfile: env.lock")
    repo.write("env.lock", "numpy==1.26.4\n")
    base = repo.commit("lock the training environment")
    plan_json(repo, base, base)
    repo.write("env.lock", "numpy==1.26.4\n--index-url https://evil.example/simple\n")
    head = repo.commit("a lockfile line pip must never see")
    with pytest.raises(SpecError) as e:
        plan_json(repo, base, head)
    assert "option --index-url is not allowed in a lockfile" in " ".join(str(d) for d in e.value.diagnostics)


def test_deleting_a_file_a_spec_names_is_an_error_on_the_cached_path(repo: Repo) -> None:
    repo.edit("pipelines/wine.yaml", "    params: {C: 1.0, max_iter: 2000}",
              "    params: {C: 1.0, max_iter: 2000}\n    code: [pipelines/wine/common.py]")
    base = repo.commit("declare the shared module as code")
    plan_json(repo, base, base)
    repo.git("rm", "-q", "pipelines/wine/common.py")
    head = repo.commit("drop the shared module")
    with pytest.raises(SpecError) as e:
        plan_json(repo, base, head)
    assert "path 'pipelines/wine/common.py' does not exist" in " ".join(str(d) for d in e.value.diagnostics)


@pytest.mark.parametrize("damage", [
    lambda data: b"garbage",
    lambda data: data[:-10],
    lambda data: b"0" * 64 + data[64:],  # a wrong checksum
    lambda data: _resealed(data, lambda raw: {**raw, "assets": [[1, 2, 3, 4, 5, 6, 7]]}),
    lambda data: _resealed(data, lambda raw: {**raw, "files": [["mlops.yaml", "x", "Project", "p"]]}),
    lambda data: _resealed(data, lambda raw: {**raw, "stamp": "old"}),
    lambda data: _resealed(data, lambda raw: []),
])
def test_a_damaged_side_cache_is_a_cold_cache(repo: Repo, damage: object) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("models/wine-classifier.yaml", "team: data-science", "team: ml")
    head = repo.commit("retag")
    expected = uncached(repo, base, head)
    plan_json(repo, base, head)
    for path in sides(repo):
        path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    loader._PARSE_CACHE.clear()
    sidecache._MEMO.clear()
    assert plan_json(repo, base, head) == expected


@pytest.mark.parametrize("damage", [
    lambda data: b"garbage",
    lambda data: b"",
    lambda data: data.replace(b"sklearn", b"sklearm"),  # records that parse but do not fit their entry
    lambda data: b"\n".join(reversed(data.split(b"\n"))),
])
def test_a_damaged_pack_of_spec_documents_is_a_cold_cache(repo: Repo, damage: object) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("environments/serving.yaml", "numpy>=1.24", "numpy>=1.25")
    head = repo.commit("serving needs a newer numpy")
    expected = uncached(repo, base, head)
    specs = loader.load(loader.open_source(repo.path, head)).specs
    plan_json(repo, base, head)
    packs = sorted((repo.path / ".mlops" / "cache" / "sides").glob("*.pack"))
    assert packs
    for path in packs:
        path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    loader._PARSE_CACHE.clear()
    sidecache._MEMO.clear()
    assert plan_json(repo, base, head) == expected
    sidecache._MEMO.clear()
    assert read_side(repo.path, head).specs == specs


def test_the_specs_of_a_cached_side_equal_those_loaded_afresh(repo: Repo) -> None:
    head = repo.git("rev-parse", "HEAD")
    fresh = loader.load(loader.open_source(repo.path, head)).specs
    read_side(repo.path, head)
    sidecache._MEMO.clear()
    loader._PARSE_CACHE.clear()
    cached = read_side(repo.path, head)
    assert isinstance(cached.loaded, sidecache.CachedLoad)
    assert cached.specs.endpoints["wine"] == fresh.endpoints["wine"]  # one built alone, then all of them
    assert cached.specs == fresh and fresh == cached.specs
    assert list(cached.specs.pipelines) == list(fresh.pipelines) and dict(cached.specs.models) == fresh.models


def _resealed(data: bytes, change: object) -> bytes:
    import hashlib

    body = json.dumps(change(json.loads(data.partition(b"\n")[2]))).encode()  # type: ignore[operator]
    return hashlib.sha256(body).hexdigest().encode() + b"\n" + body


@pytest.mark.parametrize("refresh", ["--no-refresh", "--refresh"])
def test_a_cached_plan_imports_neither_gitpython_nor_jinja2_nor_jsonschema(repo: Repo, refresh: str) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("models/wine-classifier.yaml", "team: data-science", "team: ml")
    head = repo.commit("retag")
    mlops(repo, "plan", "--base", base, "--head", head, refresh)  # fills the caches
    code = ("import sys\nfrom mlops.cli.main import main\n"
            f"try:\n    main(['-C', {str(repo.path)!r}, 'plan', '--base', {base!r}, '--head', {head!r}, {refresh!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('git', 'jinja2', 'jsonschema') if m in sys.modules), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "register_model" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"
