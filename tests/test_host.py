"""The host's identity: the running interpreter's exact version and the packages visible to it."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from mlops import host


def dist_info(folder: Path, name: str, version: str) -> Path:
    d = folder / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return d


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of installed packages at the end of sys.path (sys.path[0], the script's folder, stays first)."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(folder)])
    return folder


def test_identity_names_the_interpreter_and_changes_with_its_packages(site: Path) -> None:
    before = host.host_identity()
    impl, version = platform.python_implementation().lower(), platform.python_version()
    assert before.startswith(f"host:{impl}-{version}:") and len(before.rsplit(":", 1)[1]) == 64
    assert host.host_identity() == before

    dist_info(site, "tiny_pkg", "0.1")
    installed = host.host_identity()
    assert installed != before
    assert "tiny-pkg==0.1" in host.packages(host.package_paths())

    os.rename(site / "tiny_pkg-0.1.dist-info", site / "tiny_pkg-0.2.dist-info")  # an upgrade
    assert host.host_identity() not in (before, installed)
    (site / "tiny_pkg-0.2.dist-info" / "METADATA").unlink()
    (site / "tiny_pkg-0.2.dist-info").rmdir()  # uninstalled
    assert host.host_identity() == before


def test_other_files_and_the_scripts_folder_do_not_count(site: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before = host.host_identity()
    (site / "module.py").write_text("x = 1\n")
    (site / "notes.txt").write_text("hello\n")
    assert host.host_identity() == before
    scripts = tmp_path / "scripts"
    dist_info(scripts, "in_script_dir", "1.0")
    monkeypatch.setattr(sys, "path", [str(scripts), *sys.path[1:]])
    assert host.host_identity() == before


def test_egg_info_folders_and_the_first_of_two_copies(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    dist_info(first, "Scikit_Learn", "1.4.2")
    dist_info(second, "scikit_learn", "1.0")
    egg = second / "PyYAML-6.0-py3.11.egg-info"
    egg.mkdir()
    source_tree = second / "mlops_gitops.egg-info"  # a project's own, from an editable install
    source_tree.mkdir()
    (source_tree / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: mlops-gitops\nVersion: 0.1.0\n")
    assert host.packages([str(first), str(second), str(tmp_path / "missing")]) == [
        "mlops-gitops==0.1.0", "pyyaml==6.0", "scikit-learn==1.4.2"]


def test_unchanged_folders_are_not_listed_again(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist_info(site, "tiny_pkg", "0.1")
    host.host_identity()
    listed_while_racy = host.packages([str(site)])  # changed just now: listed every time, not memoised
    assert listed_while_racy == ["tiny-pkg==0.1"]
    os.utime(site, ns=(0, os.stat(site).st_mtime_ns - 10**10))  # as if installed ten seconds ago
    host.host_identity()
    listed: list[str] = []
    real = os.scandir

    def counting(path: str) -> object:
        listed.append(path)
        return real(path)

    monkeypatch.setattr(host.os, "scandir", counting)
    host.host_identity()
    assert listed == []  # a no-op run pays one stat per folder
    dist_info(site, "other", "1.0")
    host.host_identity()
    assert listed == [str(site)]
    host.host_identity()
    assert listed == [str(site), str(site)]  # changed just now: not trusted to the memo yet
