"""Damaged store records give one clear line naming the record and the fix, never a traceback,
and one bad record hides nothing else in a listing (the good ones are shown, then exit 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readonly import run_with_readonly
from tests.registry.conftest import make_repo

PROJECT = "kind: Project\nname: t\nstages: [{name: dev}]\n"


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"mlops.yaml": PROJECT, ".gitignore": ".mlops/\n"})


def argv(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mlops.cli", "-C", str(repo), *args]


def cli(repo: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv(repo, *args), capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == code, (args, out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    return out


def register(repo: Path, name: str, content: bytes, tmp: Path) -> None:
    f = tmp / f"{name}-{len(content)}.bin"
    f.write_bytes(content)
    cli(repo, "models", "register", name, str(f), "--flavor", "pickle")


def record(repo: Path, key: str) -> Path:
    return repo / ".mlops" / "records" / key


def test_one_damaged_version_record_hides_no_other_model(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"model a", tmp_path)
    register(repo, "b", b"model b1", tmp_path)
    register(repo, "b", b"model b2", tmp_path)
    register(repo, "c", b"model c", tmp_path)
    record(repo, "registry/models/b/versions/0000000002.json").write_text("{garbage")
    record(repo, "registry/models/c/versions/0000000001.json").write_text(
        json.dumps({"name": "c", "version": 1, "flavor": "pickle", "files": "not a list"}))
    out = cli(repo, "models", "list", code=4)
    lines = out.stdout.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [["a", "1", "1"], ["b", "1", "2"]]  # b@1: the latest readable
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "registry/models/b/versions/0000000002.json" in warnings[0] and "is damaged" in warnings[0]
    assert "registry/models/c/versions/0000000001.json" in warnings[1] and "restore it" in warnings[1]
    assert out.stderr.splitlines()[-1].startswith("error: 2 damaged records in file://")
    listed = json.loads(cli(repo, "models", "list", "-o", "json", code=4).stdout)
    assert [r["name"] for r in listed] == ["a", "b"]
    found = cli(repo, "models", "search", "flavor=pickle", code=4)
    assert [line.split()[0] for line in found.stdout.splitlines()[1:]] == ["a@1", "b@1"]
    shown = cli(repo, "models", "show", "b@2", code=4)
    assert shown.stderr.count("\n") == 1 and "registry/models/b/versions/0000000002.json" in shown.stderr


def test_a_record_under_the_wrong_key_is_refused(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"model a", tmp_path)
    register(repo, "b", b"model b", tmp_path)
    record(repo, "registry/models/b/versions/0000000001.json").write_bytes(
        record(repo, "registry/models/a/versions/0000000001.json").read_bytes())
    out = cli(repo, "models", "show", "b", code=4)
    assert "holds a@1, not the version its key names" in out.stderr


def test_damaged_tags_record_names_itself(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"model a", tmp_path)
    cli(repo, "models", "tag", "a@1", "team=x")
    record(repo, "registry/models/a/tags/0000000001.json").write_text('["not", "a", "mapping"]')
    out = cli(repo, "models", "show", "a", code=4)
    assert "tags record registry/models/a/tags/0000000001.json" in out.stderr and "delete it" in out.stderr


def test_a_deleted_version_whose_content_index_remains(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"model a", tmp_path)
    record(repo, "registry/models/a/versions/0000000001.json").unlink()
    f = tmp_path / "a-7.bin"  # the very same file again
    out = cli(repo, "models", "register", "a", str(f), "--flavor", "pickle", code=4)
    index = next((repo / ".mlops/records/registry/models/a/fingerprints").iterdir())
    assert f"content index record registry/models/a/fingerprints/{index.name}" in out.stderr
    assert "whose record is gone; delete the index record" in out.stderr
    index.unlink()  # the way forward the message gives
    assert cli(repo, "models", "register", "a", str(f), "--flavor", "pickle").stdout.strip() == "registered a@1"


def test_registering_content_again_repairs_its_same_size_corrupt_blob(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"the real model", tmp_path)
    blob = next(p for p in (repo / ".mlops/blobs/sha256").rglob("*") if p.is_file())
    blob.write_bytes(b"the evil model")  # same size
    failed = cli(repo, "models", "download", "a", str(tmp_path / "dl"), code=4)
    assert "is corrupt" in failed.stderr and "repairs it" in failed.stderr
    register(repo, "b", b"the real model", tmp_path)  # the same content, registered again
    cli(repo, "models", "download", "a", str(tmp_path / "dl"))
    assert [p.read_bytes() for p in (tmp_path / "dl").iterdir()] == [b"the real model"]


def test_one_damaged_dataset_record_hides_no_other(repo: Path, tmp_path: Path) -> None:
    for name in ("d1", "d2"):
        f = tmp_path / f"{name}.csv"
        f.write_text(f"{name}\n")
        cli(repo, "datasets", "register", name, str(f))
    record(repo, "registry/datasets/d1/versions/0000000001.json").write_text("null")
    out = cli(repo, "datasets", "list", code=4)
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["d2"]
    assert "registry/datasets/d1/versions/0000000001.json" in out.stderr


def test_damaged_run_records_are_listed_apart(repo: Path) -> None:
    good = {"run_id": "20260101T000000000000Z-aaaaaa", "pipeline": "p", "status": "succeeded",
            "started": "2026-01-01T00:00:00.000+00:00", "finished": "2026-01-01T00:00:01.000+00:00",
            "steps": [{"name": "s", "status": "ran", "command": ["python", "x.py"]}]}
    for run_id, body in ((good["run_id"], json.dumps(good)),
                         ("20260102T000000000000Z-bbbbbb", "\x00\x01 garbage"),
                         ("20260103T000000000000Z-cccccc", json.dumps({**good, "run_id": "20260103T000000000000Z-cccccc",
                                                                       "steps": [{"name": 5}]})),
                         ("20260104T000000000000Z-dddddd", json.dumps({**good, "started": 7}))):
        path = record(repo, f"runs/p/{run_id}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    out = cli(repo, "runs", code=4)
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == [good["run_id"]]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and all("run record runs/p/2026010" in w and "delete that record" in w
                                      for w in warnings), warnings
    assert json.loads(cli(repo, "runs", "--output", "json", code=4).stdout)[0]["run_id"] == good["run_id"]


@pytest.mark.parametrize("body", ["{oops", '{"serial": "seven"}', "[1, 2]", '{"serial": -1}'])
def test_damaged_state_record_names_itself_and_the_fix(repo: Path, body: str) -> None:
    path = record(repo, "reconcile/state.json")
    path.parent.mkdir(parents=True)
    path.write_text(body)
    out = cli(repo, "plan", code=4)
    assert out.stderr.count("\n") == 1, out.stderr
    assert "state record reconcile/state.json in file://" in out.stderr and "delete it and reconcile with --base REV" in out.stderr


def test_a_read_only_store_says_so(repo: Path, tmp_path: Path) -> None:
    register(repo, "a", b"model a", tmp_path)
    f = tmp_path / "b.bin"
    f.write_bytes(b"model b")
    out = run_with_readonly(repo / ".mlops", argv(repo, "models", "register", "b", str(f), "--flavor", "pickle"))
    assert out.returncode == 4, out.stderr
    assert out.stderr.startswith("error: cannot write blob ") and "the store is read-only" in out.stderr
    assert out.stderr.count("\n") == 1
    listed = run_with_readonly(repo / ".mlops", argv(repo, "models", "list"))  # reading still works
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[0] == "a", listed.stderr
