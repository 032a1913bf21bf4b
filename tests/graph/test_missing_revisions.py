"""A revision that is not in the clone (shallow CI checkouts) is a clear error with the way to get it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlops.errors import MissingRevisionError
from mlops.graph.compare import compare
from tests.gitrepo import Repo, example_repo, mlops


def test_a_base_missing_from_a_shallow_clone(tmp_path: Path) -> None:
    origin = example_repo(tmp_path / "origin")
    base = origin.git("rev-parse", "HEAD")
    origin.edit("models/wine-classifier.yaml", "team: data-science", "team: ml")
    origin.commit("retag")
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin.path}", str(tmp_path / "clone")],
                   check=True, capture_output=True)
    clone = Repo(tmp_path / "clone")
    with pytest.raises(MissingRevisionError) as e:
        compare(clone.path, base, None)
    assert e.value.rev == base
    for args in (("plan", "--base", base), ("diff", "--base", base), ("validate", "--rev", base)):
        out = mlops(clone, *args, check=False)
        assert out.returncode == 9, (args, out.stderr)
        assert out.stderr.strip().splitlines() == [
            f"error: unknown revision {base!r}: it is not in this shallow clone; if it exists upstream, fetch it "
            f"(`git fetch origin {base}`) or the whole history (`git fetch --unshallow`; in GitHub Actions, "
            "actions/checkout with `fetch-depth: 0`), or pass another --base"], out.stderr
    clone.git("fetch", "-q", "--unshallow")  # the way forward the message gives
    assert mlops(clone, "diff", "--base", base).returncode == 0
