"""Change detection between commits: read through git (no checkout), with reasons and everything downstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.graph.compare import compare
from tests.gitrepo import Repo, example_repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return example_repo(tmp_path / "repo")


def changes(repo: Repo, base: str, head: str | None) -> dict[str, tuple[str, tuple[str, ...]]]:
    cmp = compare(repo.path, base, head)
    return {c.asset: (c.change, c.reasons) for c in cmp.changes.changes}


def test_step_code_change_propagates_downstream_with_reason(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.edit("pipelines/wine/train.py", "import argparse", "import argparse\nimport os  # noqa: F401")
    head = repo.commit("tweak training")
    got = changes(repo, base, head)
    assert set(got) == {"step/wine-train/train", "step/wine-train/evaluate", "step/wine-train/export",
                        "pipeline/wine-train", "model/wine-classifier", "endpoint/wine"}
    assert got["step/wine-train/train"] == ("changed", ("pipelines/wine/train.py changed → step wine-train/train",))
    assert got["step/wine-train/evaluate"][0] == "affected"
    assert got["endpoint/wine"][1] == ("pipelines/wine/train.py changed → step wine-train/train → pipeline wine-train"
                                       " → model wine-classifier → endpoint wine",)
    assert "step/wine-train/prepare" not in got  # upstream of the change: untouched


def test_helper_module_change_invalidates_importers_only(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("pipelines/wine/only_train.py", "SCALE = 1\n")
    repo.edit("pipelines/wine/train.py", "import argparse", "import argparse\nimport only_train  # noqa: F401")
    mid = repo.commit("train uses a helper")
    repo.edit("pipelines/wine/only_train.py", "SCALE = 1", "SCALE = 2")
    head = repo.commit("change helper")
    got = changes(repo, mid, head)
    assert got["step/wine-train/train"] == ("changed", ("pipelines/wine/only_train.py changed → step wine-train/train",))
    assert "step/wine-train/prepare" not in got
    assert base != mid


def test_unrelated_file_and_spec_rename_change_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("docs/notes.md", "hello\n")
    repo.git("mv", "models/wine-classifier.yaml", "models/wine.yaml")
    repo.edit("models/wine.yaml", "description:", "# a comment\ndescription:")
    head = repo.commit("rename spec, add docs")
    cmp = compare(repo.path, base, head)
    assert not cmp.changes.changes
    assert {"models/wine-classifier.yaml", "models/wine.yaml", "docs/notes.md"} <= set(cmp.changes.changed_files)


def test_deletion_creation_and_worktree_only_change(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", "endpoints/wine.yaml")
    repo.write("environments/extra.yaml", "kind: Environment\nname: extra\npython: '3.11'\n")
    head = repo.commit("drop endpoint, add env")
    got = changes(repo, base, head)
    assert got == {"environment/extra": ("created", ("new in environments/extra.yaml",)),
                   "endpoint/wine": ("removed", ("removed from endpoints/wine.yaml",))}
    # a change only in the working tree is seen with the worktree as head, not at HEAD
    repo.edit("environments/sklearn.yaml", "OMP_NUM_THREADS: \"1\"", "OMP_NUM_THREADS: \"2\"")
    assert changes(repo, "HEAD", "HEAD") == {}
    wt = changes(repo, "HEAD", None)
    assert wt["environment/sklearn"] == ("changed", ("environments/sklearn.yaml changed → environment sklearn",))
    assert wt["model/wine-classifier"][0] == "affected"


def test_untracked_data_file_input_counts(repo: Repo) -> None:
    repo.edit("pipelines/wine.yaml", "    outputs:\n      train: data/wine/train.csv",
              "    inputs:\n      extra: raw/extra.csv\n    outputs:\n      train: data/wine/train.csv")
    head = repo.commit("prepare reads raw data")
    repo.write("raw/extra.csv", "a,b\n1,2\n")  # untracked, not ignored
    got = changes(repo, head, None)
    assert got["step/wine-train/prepare"] == ("changed", ("raw/extra.csv changed → step wine-train/prepare",))


def test_first_plan_from_empty_creates_everything(repo: Repo) -> None:
    got = changes(repo, "empty", "HEAD")
    assert got["environment/sklearn"][0] == "created"
    assert got["endpoint/wine"] == ("created", ("new in endpoints/wine.yaml",))
    assert len(got) == 9


def test_invalid_base_is_planned_as_empty_not_an_error(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "type: online", "type: onlien")
    bad = repo.commit("broken")
    repo.edit("endpoints/wine.yaml", "type: onlien", "type: online")
    head = repo.commit("fixed")
    cmp = compare(repo.path, bad, head)
    assert cmp.base_invalid and "'onlien' is not one of online, batch" in cmp.base_invalid[0]
    assert {c.change for c in cmp.changes.changes} == {"created"}


def test_base_with_only_cross_reference_errors_is_diffed_normally(repo: Repo) -> None:
    repo.edit("endpoints/wine.yaml", "blue: 100", "blue: 10")
    bad = repo.commit("traffic does not add up")
    repo.edit("endpoints/wine.yaml", "blue: 10", "blue: 100")
    head = repo.commit("fixed")
    cmp = compare(repo.path, bad, head)
    assert not cmp.base_invalid
    assert [(c.asset, c.change) for c in cmp.changes.changes] == [("endpoint/wine", "changed")]


def test_unknown_revision_is_a_clear_error(repo: Repo) -> None:
    from mlops.errors import RevisionError

    with pytest.raises(RevisionError, match="unknown revision 'nope'"):
        compare(repo.path, "nope", None)


def test_caches_of_another_layout_or_garbage_are_dropped_not_misread(repo: Repo) -> None:
    import json

    from mlops.spec.cache import _stamp

    base = repo.git("rev-parse", "HEAD")
    repo.edit("pipelines/wine/train.py", "import argparse", "import argparse\nimport os  # noqa: F401")
    head = repo.commit("tweak")
    cache = repo.path / ".mlops/cache"
    cache.mkdir(parents=True)
    # an older layout of the import cache under the same package version: [module, level] pairs
    (cache / "imports.json").write_text(json.dumps({"stamp": _stamp(), "entries": {
        repo.git("rev-parse", f"{head}:pipelines/wine/train.py"): [["common", 0]]}}))
    (cache / "specs.json").write_text("{not json")
    got = changes(repo, base, head)
    assert got["step/wine-train/train"][0] == "changed"
    assert json.loads((cache / "imports.json").read_text())["stamp"].endswith(":imports-2")
