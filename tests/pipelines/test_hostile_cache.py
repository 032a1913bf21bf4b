"""Cache entries are store records (and a workspace memo): untrusted. A directory output's
manifest names the files a restore writes, so a forged one must never lead a restore out of the
output (into ``.git``, over tracked files, or out of the repository): it is a cache miss."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlops.pipelines.digests import Digest, manifest_digest
from mlops.store.local import LocalStore
from tests.gitrepo import Repo, init_repo, mlops

PIPELINE = """kind: Pipeline
name: p
steps:
  - name: make
    command: [python, steps/make.py, "${outputs.o}"]
    outputs:
      o: out/d
"""
MAKE = "import os, sys\nos.makedirs(sys.argv[1], exist_ok=True)\nopen(os.path.join(sys.argv[1], 'f'), 'w').write('ok\\n')\n"
PAYLOAD = b"[core]\n\tfsmonitor = touch /tmp/never\n"
D = "a" * 64


def _repo(path: Path) -> Repo:
    repo = init_repo(path)
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/make.py", MAKE)
    repo.write("pipelines/p.yaml", PIPELINE)
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("small project")
    return repo


def _forge(repo: Repo, names: list[str]) -> None:
    """Point the step's cache entry (store record and memo) at ``names``, all holding PAYLOAD."""
    blob = LocalStore(repo.path / ".mlops").put_bytes(PAYLOAD)
    manifest = [[name, blob] for name in sorted(names)]
    digest = hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()
    records = list((repo.path / ".mlops/records/pipelines/cache").glob("*.json"))
    memo = repo.path / ".mlops/cache/pipelines/memo/p.json"
    assert records and memo.is_file()
    for path in [*records, memo]:
        data = json.loads(path.read_text())
        entry = data if "outputs" in data else data["steps"]["make"]
        entry["outputs"]["o"] = {"kind": "dir", "digest": digest, "manifest": manifest}
        path.chmod(0o644)
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("names", [
    ["../../.git/config"],
    ["../../steps/make.py"],
    ["f", "../../.git/hooks/post-commit"],
    ["./../../steps/make.py"],
])
def test_a_forged_manifest_never_writes_outside_the_output(tmp_path: Path, names: list[str]) -> None:
    repo = _repo(tmp_path / "repo")
    mlops(repo, "run", "p")
    config = (repo.path / ".git/config").read_bytes()
    _forge(repo, names)
    for out in (repo.path / "out/d").iterdir():
        out.unlink()

    run = mlops(repo, "run", "p")

    assert "1 ran" in run.stdout, run.stdout  # a forged entry is a cache miss: the step runs again
    assert (repo.path / ".git/config").read_bytes() == config
    assert not (repo.path / ".git/hooks/post-commit").exists()
    assert repo.git("status", "--porcelain") == ""
    assert sorted(p.name for p in (repo.path / "out/d").iterdir()) == ["f"]


@pytest.mark.parametrize("manifest", [
    [["../x", D]], [["/etc/x", D]], [["a//b", D]], [["a/./b", D]], [["", D]], [["a\0b", D]],
    [["a", D], ["a/b", D]], [["b", D], ["a", D]], [["a", D], ["a", D]], [["a", "not-a-digest"]],
    [["a", D + "\n"]], [[1, D]],
])
def test_manifest_entries_are_plain_relative_paths(manifest: list[list[object]]) -> None:
    digest = hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()
    with pytest.raises((ValueError, TypeError)):
        Digest.from_json({"kind": "dir", "digest": digest, "manifest": manifest})


def test_a_manifest_must_hash_to_its_digest() -> None:
    manifest = (("a", D), ("b/c", D))
    good = Digest.from_json({"kind": "dir", "digest": manifest_digest(manifest), "manifest": [list(e) for e in manifest]})
    assert good.manifest == manifest
    with pytest.raises(ValueError):
        Digest.from_json({"kind": "dir", "digest": D, "manifest": [list(e) for e in manifest]})
    with pytest.raises(ValueError):
        Digest.from_json({"kind": "file", "digest": D + "\n"})


def test_cached_metrics_come_from_the_checked_output_not_the_entry(tmp_path: Path) -> None:
    """The memo (a workspace file) and cache records are untrusted: their metrics went into the run
    record of a cached step, and from there into model versions (acc 0.9 became 0.999)."""
    repo = init_repo(tmp_path / "repo")
    repo.write("mlops.yaml", "kind: Project\nname: small\nstages: [{name: dev}]\n")
    repo.write("steps/train.py", "import json, sys\njson.dump({'acc': 0.9}, open(sys.argv[1], 'w'))\n")
    repo.write("pipelines/p.yaml", "kind: Pipeline\nname: p\nsteps:\n  - name: train\n"
                                   "    command: [python, steps/train.py, \"${outputs.metrics}\"]\n"
                                   "    outputs: {metrics: out/metrics.json}\n    metrics: metrics\n")
    repo.write(".gitignore", ".mlops/\nout/\n")
    repo.commit("metrics")
    mlops(repo, "run", "p")
    for path in [repo.path / ".mlops/cache/pipelines/memo/p.json",
                 *(repo.path / ".mlops/records/pipelines/cache").glob("*.json")]:
        data = json.loads(path.read_text())
        entry = data if "outputs" in data else data["steps"]["train"]
        entry["metrics"] = {"acc": 0.999}
        path.chmod(0o644)
        path.write_text(json.dumps(data))

    out = mlops(repo, "run", "p")
    assert "1 cached" in out.stdout

    runs = json.loads(mlops(repo, "runs", "--output", "json").stdout)
    assert [s["metrics"] for r in runs for s in r["steps"]] == [{"acc": 0.9}, {"acc": 0.9}]
