"""mlops.paths: resolving inside the repository, and writing without ever following a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops import paths
from mlops.errors import PathError
from tests.sentinel import SECRET, make_sentinel, snapshot


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return make_sentinel(tmp_path / "outside")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw.txt").write_text("raw\n")
    (root / ".git").mkdir()
    return root


def test_lexical_rules() -> None:
    assert paths.lexical("a/./b/../c") == "a/c"
    assert paths.lexical(".") == "" and paths.lexical("./") == ""
    for bad in ("/etc/passwd", "~/x", "..", "../x", "a/../../x"):
        with pytest.raises(PathError, match="escapes the repository"):
            paths.lexical(bad)
    assert paths.reserved(".git/config") == ".git" and paths.reserved(".Git") == ".git"
    assert paths.reserved(".mlops") == ".mlops" and paths.reserved("a/.git") is None
    assert paths.overlap("a", "a/b") and paths.overlap("a/b", "a") and paths.overlap("a", "a")
    assert not paths.overlap("a", "ab") and not paths.overlap("a/b", "a/c")


def test_links_are_followed_only_while_they_stay_inside(root: Path, sentinel: Path) -> None:
    os.symlink("data", root / "inlink")
    os.symlink(str(root / "data"), root / "abslink")  # absolute, but inside
    os.symlink(sentinel, root / "outlink")
    os.symlink("../outside", root / "uplink")
    os.symlink("inlink/../outlink", root / "chain")
    os.symlink(".git", root / "gitlink")
    os.symlink("loop", root / "loop")
    assert paths.resolve_inside(root, "inlink/raw.txt") == root / "data/raw.txt"
    assert paths.resolve_inside(root, "abslink/raw.txt") == root / "data/raw.txt"
    assert paths.resolve_inside(root, "inlink/new/file") == root / "data/new/file"  # missing is fine
    for rel, link in (("outlink/shadow", "'outlink' -> "), ("uplink/shadow", "'uplink' -> '../outside'"),
                      ("chain/shadow", "'outlink' -> ")):
        with pytest.raises(PathError, match=f"leads outside the repository through the symbolic link {link}"):
            paths.resolve_inside(root, rel)
    with pytest.raises(PathError, match="leads into .git/ through a symbolic link"):
        paths.resolve_inside(root, "gitlink/config")
    with pytest.raises(PathError, match="too many levels of symbolic links"):
        paths.resolve_inside(root, "loop/x")
    with pytest.raises(PathError, match="passes through the symbolic link 'inlink'"):
        paths.check_writable(root, "inlink/new.txt")
    paths.check_writable(root, "data/new/deeper.txt")  # real directories, or missing ones
    paths.check_writable(root, "outlink")  # the output itself is replaced, never followed


def test_reads_are_confined_and_bounded(root: Path, sentinel: Path) -> None:
    os.symlink(sentinel / "shadow", root / "data" / "leak")
    os.symlink("/proc/self/environ", root / "environ")
    os.mkfifo(root / "data" / "fifo")
    with pytest.raises(PathError, match="leads outside"):
        paths.read_bytes_inside(root, "data/leak", 1 << 20)
    with pytest.raises(PathError, match="leads outside"):
        paths.read_bytes_inside(root, "environ", 1 << 20)
    with pytest.raises(PathError, match="not a regular file"):  # opened without blocking, then refused
        paths.read_bytes_inside(root, "data/fifo", 1 << 20)
    with pytest.raises(PathError, match="larger than 2 bytes"):
        paths.read_bytes_inside(root, "data/raw.txt", 2)
    assert paths.read_bytes_inside(root, "data/raw.txt", 4) == b"raw\n"
    with pytest.raises(PathError, match="leads outside"):
        paths.files_below(root, "data")
    os.unlink(root / "data" / "leak")
    os.symlink("raw.txt", root / "data" / "alias")
    assert paths.files_below(root, "data") == [("alias", "data/alias"), ("raw.txt", "data/raw.txt")]


def test_the_store_reads_the_very_file_that_was_checked(root: Path, sentinel: Path) -> None:
    with paths.opened_file(root, "data/raw.txt") as (opened, size):
        # swapped for a link to a host file after the check: the open file is still the checked one
        os.rename(root / "data" / "raw.txt", root / "data" / "moved.txt")
        os.symlink(sentinel / "shadow", root / "data" / "raw.txt")
        assert size == 4
        if str(opened).startswith("/proc/self/fd/"):
            assert opened.read_bytes() == b"raw\n"


def test_writes_never_follow_a_directory_swapped_for_a_link(root: Path, sentinel: Path) -> None:
    """The race a parallel step could win: checked as a real directory, a link when written."""
    (root / "out").mkdir()
    paths.check_writable(root, "out/model.bin")
    os.rmdir(root / "out")
    os.symlink(sentinel, root / "out")
    scratch = root / "scratch"
    scratch.mkdir()
    (scratch / "blob").write_text("new content\n")
    before = snapshot(sentinel)
    with paths.TreeWriter(root) as w:
        with pytest.raises(PathError, match="out is not a real directory"):
            w.place("out/shadow", scratch / "blob")
        with pytest.raises(PathError, match="out is not a real directory"):
            w.remove("out/sub")
        with pytest.raises(PathError, match="out is not a real directory"):
            w.makedirs("out/sub/deeper")
        w.remove("out")  # the link itself goes, never what it points at
    assert snapshot(sentinel) == before
    assert (sentinel / "shadow").read_text() == SECRET
    assert not os.path.lexists(root / "out")


def test_tree_writer_replaces_and_removes_below_the_root(root: Path, sentinel: Path) -> None:
    (root / "out" / "d").mkdir(parents=True)
    os.symlink(sentinel, root / "out" / "d" / "link")  # removed as a link, not followed
    (root / "out" / "d" / "f").write_text("old")
    scratch = root / "scratch"
    scratch.mkdir()
    (scratch / "t").write_text("new")
    with paths.TreeWriter(root) as w:
        w.place("out/d", scratch / "t")  # a directory in the way is removed first
        w.makedirs("out/e/f")
    assert (root / "out" / "d").read_text() == "new"
    assert (root / "out" / "e" / "f").is_dir()
    assert (sentinel / "sub" / "keep.txt").read_text() == "keep me\n"
    with paths.TreeWriter(root) as w:
        w.remove("out")
        w.remove("never/was")
        with pytest.raises(PathError):
            w.place("", scratch / "t")
    assert not (root / "out").exists()
