"""Code sets found with ast, content digests behind the stat cache, and the cache key."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mlops.pipelines import digests as digests_module
from mlops.pipelines.cachekey import step_key
from mlops.pipelines.code import CodeScanner
from mlops.pipelines.digests import StatCache, manifest_digest
from tests.pipelines.demo_repo import write


def rel(root: Path, files: list[Path]) -> list[str]:
    return [f.relative_to(root).as_posix() for f in files]


@pytest.fixture
def code_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root, "pipelines/wine/train.py", """
        import json, numpy  # stdlib and site-packages are not code of the step
        import features
        from pkg.models import linear
        from pkg import metrics, missing_name
        from pkg.sub import *
        def later():
            import lazy_helper  # imports inside functions count too
    """)
    write(root, "pipelines/wine/features.py", "from . import nothing_here\nimport pkg.util\n")
    write(root, "pipelines/wine/lazy_helper.py", "X = 1\n")
    write(root, "pipelines/wine/unused.py", "X = 2\n")
    write(root, "pkg/__init__.py", "")
    write(root, "pkg/models/__init__.py", "from .linear import fit\nfrom ..util import helper\n")
    write(root, "pkg/models/linear.py", "from . import base\n")
    write(root, "pkg/models/base.py", "")
    write(root, "pkg/models/unused.py", "")
    write(root, "pkg/metrics.py", "")
    write(root, "pkg/util.py", "")
    write(root, "pkg/sub/__init__.py", "")
    write(root, "pkg/cli/__init__.py", "")
    write(root, "pkg/cli/__main__.py", "from pkg.cli import commands\n")
    write(root, "pkg/cli/commands.py", "")
    write(root, "scripts/run.sh", "#!/bin/sh\n")
    write(root, "conf/a.yaml", "a: 1\n")
    write(root, "conf/sub/b.yaml", "b: 1\n")
    write(root, "conf/__pycache__/x.pyc", "")
    return root


def scanner(root: Path) -> CodeScanner:
    return CodeScanner(root, StatCache(root), root / ".mlops/cache/pipelines/imports.json")


def test_scripts_and_their_local_imports_transitively(code_repo: Path) -> None:
    found = scanner(code_repo).code_files(["python", "pipelines/wine/train.py", "--lr", "0.1"])
    assert rel(code_repo, found) == [
        "pipelines/wine/features.py",
        "pipelines/wine/lazy_helper.py",
        "pipelines/wine/train.py",
        "pkg/__init__.py",
        "pkg/metrics.py",
        "pkg/models/__init__.py",
        "pkg/models/base.py",
        "pkg/models/linear.py",
        "pkg/sub/__init__.py",
        "pkg/util.py",
    ]


def test_dash_m_modules_executables_and_extras(code_repo: Path) -> None:
    s = scanner(code_repo)
    assert rel(code_repo, s.code_files(["python3", "-m", "pkg.cli", "--x"])) == [
        "pkg/__init__.py", "pkg/cli/__init__.py", "pkg/cli/__main__.py", "pkg/cli/commands.py",
    ]
    assert rel(code_repo, s.code_files(["scripts/run.sh", "data.csv"], ["conf", "pkg/util.py"])) == [
        "conf/a.yaml", "conf/sub/b.yaml", "pkg/util.py", "scripts/run.sh",
    ]
    assert s.code_files(["python", "/usr/lib/python3/os.py", "../outside.py"]) == []
    with pytest.raises(FileNotFoundError, match="code 'nope'"):
        s.code_files(["true"], ["nope"])


def test_import_scan_is_cached_by_content_digest(code_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = scanner(code_repo)
    files = first.code_files(["python", "pipelines/wine/train.py"])
    first.save()
    assert (code_repo / ".mlops/cache/pipelines/imports.json").is_file()

    import mlops.graph.code as code_module

    def no_parsing(source: bytes) -> list[object]:
        raise AssertionError(f"{source[:40]!r} was parsed again")

    monkeypatch.setattr(code_module, "parse_imports", no_parsing)
    assert scanner(code_repo).code_files(["python", "pipelines/wine/train.py"]) == files


def test_stat_cache_reuses_digests_of_unchanged_files_and_notices_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "data.bin"
    f.write_bytes(b"abc")
    old = time.time() - 60
    os.utime(f, (old, old))  # not "racy": modified long before it is hashed
    cache = StatCache(tmp_path, tmp_path / "hashes.json")
    assert cache.file_digest(f) == hashlib.sha256(b"abc").hexdigest()
    cache.save()

    reads: list[Path] = []
    real = digests_module.hash_file
    def counting(path: Path) -> str:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(digests_module, "hash_file", counting)
    again = StatCache(tmp_path, tmp_path / "hashes.json")
    assert again.file_digest(f) == hashlib.sha256(b"abc").hexdigest()
    assert reads == []  # answered from the persisted stat cache

    f.write_bytes(b"abd")  # same size, new mtime
    assert again.file_digest(f) == hashlib.sha256(b"abd").hexdigest()
    assert reads == [f]


def test_racy_entries_are_rehashed(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"one")
    cache = StatCache(tmp_path)
    assert cache.file_digest(f) == hashlib.sha256(b"one").hexdigest()
    st = f.stat()
    # rewritten within the same timestamp tick: size, mtime and inode all unchanged
    f.write_bytes(b"two")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.file_digest(f) == hashlib.sha256(b"two").hexdigest()


def test_directory_digest_is_a_sorted_manifest(tmp_path: Path) -> None:
    write(tmp_path, "d/b.txt", "b")
    write(tmp_path, "d/a/z.txt", "z")
    write(tmp_path, "d/a.txt", "a")
    digest = StatCache(tmp_path).digest(tmp_path / "d")
    h = {c: hashlib.sha256(c.encode()).hexdigest() for c in "abz"}
    assert digest.kind == "dir"
    assert digest.manifest == (("a.txt", h["a"]), ("a/z.txt", h["z"]), ("b.txt", h["b"]))
    expected = hashlib.sha256(json.dumps([list(e) for e in digest.manifest], separators=(",", ":")).encode())
    assert digest.digest == manifest_digest(digest.manifest) == expected.hexdigest()
    with pytest.raises(FileNotFoundError):
        StatCache(tmp_path).digest(tmp_path / "missing")


def test_cache_key_depends_on_each_ingredient_only() -> None:
    base: dict[str, Any] = dict(argv=["python", "t.py"], params={"lr": 0.1, "n": [1]}, environment="env1",
                                inputs={"data": "d1"}, code={"t.py": "c1"}, env={})
    key = step_key(**base)
    assert key == step_key(**{**base, "params": {"n": [1], "lr": 0.1}})
    for field, value in [("argv", ["python", "u.py"]), ("params", {"lr": 0.2, "n": [1]}), ("environment", "env2"),
                         ("inputs", {"data": "d2"}), ("code", {"t.py": "c2"}), ("env", {"X": "1"})]:
        assert step_key(**{**base, field: value}) != key, field


def test_file_digests_work_on_python_3_10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)
    monkeypatch.delattr(hashlib, "file_digest", raising=False)  # as on 3.10, which the README allows
    assert digests_module.hash_file(path) == hashlib.sha256(data).hexdigest()
