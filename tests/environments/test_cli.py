"""``mlops env build|list|show`` through the console script's entry point, on a small repository."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.cli.main import main
from mlops.environments.identity import environment_identity, repo_reader
from mlops.environments.interpreter import find_interpreter
from mlops.errors import EnvironmentBuildError
from mlops.spec.loader import load_specs
from tests.environments.wheels import make_wheel

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

pytestmark = pytest.mark.usefixtures("offline_pip")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def project(repo: Path) -> Path:
    (repo / "mlops.yaml").write_text("kind: Project\nname: envs\nstages:\n  - name: dev\n")
    (repo / "environments").mkdir()
    make_wheel(repo / "wheels", "tinypkg", "0.1")
    (repo / "environments" / "tiny.yaml").write_text(
        f"kind: Environment\nname: tiny\npython: '{PY}'\n"
        "requirements:\n  - wheels/tinypkg-0.1-py3-none-any.whl\n"
        f"variables:\n  MLOPS_TEST_RUN: {uuid.uuid4().hex}\n")
    (repo / "environments" / "bare.yaml").write_text(f"kind: Environment\nname: bare\npython: '{PY}'\n")
    return repo


@pytest.fixture
def mlops(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``mlops -C REPO ARGS`` in-process through ``main`` (what the console script calls)."""
    def run(repo: Path, *args: str, docker_host: str | None = None) -> Result:
        # Without a docker_host, `list`/`show` must cope with an engine that does not answer.
        monkeypatch.setenv("DOCKER_HOST", docker_host or "unix:///nonexistent/docker.sock")
        capsys.readouterr()
        code = 0
        try:
            main(["-C", str(repo), *args])
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return run


def test_build_then_up_to_date(project: Path, mlops: Callable[..., Result]) -> None:
    identity = environment_identity(load_specs(project).environments["tiny"], repo_reader(project))
    first = mlops(project, "env", "build", "tiny")
    assert first.returncode == 0, first.stderr
    location = project.resolve() / ".mlops" / "envs" / identity[:16]
    assert first.stdout.startswith(f"tiny: built {identity[:16]} at {location} in ")
    again = mlops(project, "env", "build", "tiny")
    assert again.stdout.startswith(f"tiny: up to date {identity[:16]} at {location} in ")


def test_list_and_show_report_what_is_built(project: Path, mlops: Callable[..., Result]) -> None:
    assert mlops(project, "env", "build", "bare").returncode == 0
    listed = mlops(project, "env", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["environments"]}
    assert set(rows) == {"bare", "tiny"}
    assert rows["bare"]["local"]["built"] is True and rows["tiny"]["local"]["built"] is False
    assert rows["bare"]["image"]["built"] is None  # no engine: unknown, not "absent"
    assert rows["tiny"]["requirements"] == ["wheels/tinypkg-0.1-py3-none-any.whl"]

    text = mlops(project, "env", "list").stdout.splitlines()
    assert text[0].split() == ["NAME", "IDENTITY", "PYTHON", "LOCAL", "IMAGE"]
    assert text[1].split()[:4] == ["bare", rows["bare"]["identity"][:16], PY, "built"]
    assert text[2].split()[:4] == ["tiny", rows["tiny"]["identity"][:16], PY, "-"]

    shown = mlops(project, "env", "show", "tiny").stdout
    assert f"identity:    {rows['tiny']['identity']}" in shown
    assert "local:       not built" in shown


def test_changed_spec_leaves_an_unused_local_environment(project: Path, mlops: Callable[..., Result]) -> None:
    assert mlops(project, "env", "build", "bare").returncode == 0
    (project / "environments" / "bare.yaml").write_text(
        f"kind: Environment\nname: bare\npython: '{PY}'\nvariables:\n  X: '1'\n")
    listed = json.loads(mlops(project, "env", "list", "--output", "json").stdout)
    assert len(listed["unused_local"]) == 1
    assert {r["name"]: r["local"]["built"] for r in listed["environments"]}["bare"] is False


def test_unknown_environment_names_the_known_ones(project: Path, mlops: Callable[..., Result]) -> None:
    result = mlops(project, "env", "build", "tinny")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: unknown environment 'tinny' (did you mean 'tiny'?) "
                                     "(environments: bare, tiny)")


def test_build_error_is_one_line_and_its_exit_code(project: Path, mlops: Callable[..., Result]) -> None:
    (project / "environments" / "future.yaml").write_text("kind: Environment\nname: future\npython: '3.99'\n")
    result = mlops(project, "env", "build", "future")
    assert result.returncode == 6
    assert result.stderr.startswith("error: environment 'future' (environments/future.yaml) needs python 3.99")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.docker
def test_docker_build_and_show(project: Path, mlops: Callable[..., Result], docker_host: str, docker_client: object, base_image: str) -> None:
    spec = project / "environments" / "tiny.yaml"
    # The base image has Debian bookworm's python 3.11, and requirements are installed by a host python of
    # the same version: pin it (mlops may run on another version), skip where the host has no 3.11.
    spec.write_text(spec.read_text().replace(f"python: '{PY}'", "python: '3.11'") + f"base_image: {base_image}\n")
    try:
        find_interpreter(load_specs(project).environments["tiny"])
    except EnvironmentBuildError as e:
        pytest.skip(f"no host python 3.11 to install the image's requirements with: {e}")
    identity = environment_identity(load_specs(project).environments["tiny"], repo_reader(project))
    tag = f"mlops-env/tiny:{identity[:16]}"
    try:
        first = mlops(project, "env", "build", "tiny", "--target", "docker", docker_host=docker_host)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith(f"tiny: built {identity[:16]} image {tag} (sha256:")
        again = mlops(project, "env", "build", "tiny", "--target", "docker", docker_host=docker_host)
        assert again.stdout.startswith(f"tiny: up to date {identity[:16]} image {tag} (sha256:")
        shown = json.loads(mlops(project, "env", "show", "tiny", "--output", "json", docker_host=docker_host).stdout)
        assert shown["image"]["tag"] == tag and shown["image"]["built"] is True
        assert shown["local"]["built"] is False
    finally:
        docker_client.images.remove(tag, force=True)  # type: ignore[attr-defined]


def test_a_build_shows_what_pip_does_on_stderr(project: Path, mlops: Callable[..., Result]) -> None:
    built = mlops(project, "env", "build", "tiny")
    assert built.returncode == 0, built.stderr
    progress = built.stderr.splitlines()
    assert progress[0].startswith("  tiny: creating a virtualenv with ")
    assert "  tiny: installing requirements with pip" in progress
    assert "    pip: Successfully installed tinypkg-0.1" in progress
    assert progress[-1].startswith("  tiny: built in ") and progress[-1].endswith(" s (pip: 1 installed)")
    assert built.stdout.startswith("tiny: built ")  # the result stays on stdout
    assert mlops(project, "env", "build", "tiny").stderr == ""  # nothing to build: nothing to show


def test_run_with_json_output_builds_quietly(project: Path, mlops: Callable[..., Result]) -> None:
    (project / "pipelines").mkdir()
    (project / "pipelines" / "p.yaml").write_text(
        "kind: Pipeline\nname: p\nenvironment: tiny\nsteps:\n"
        "  - name: s\n    command: [python, -c, \"import tinypkg, sys; open(sys.argv[1], 'w').write(tinypkg.VERSION)\","
        " \"${outputs.o}\"]\n    outputs: {o: out/version.txt}\n")
    result = mlops(project, "run", "p", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
    assert "pip" not in result.stderr and "tiny:" not in result.stderr
    assert (project / "out" / "version.txt").read_text() == "0.1"


def test_unpinned_python_is_the_running_interpreter(project: Path, mlops: Callable[..., Result]) -> None:
    (project / "environments" / "bare.yaml").write_text("kind: Environment\nname: bare\n")
    built = mlops(project, "env", "build", "bare")
    assert built.returncode == 0, built.stderr
    rows = {r["name"]: r for r in json.loads(mlops(project, "env", "list", "--output", "json").stdout)["environments"]}
    assert rows["bare"]["python"] is None and rows["bare"]["local"]["built"] is True
    marker = json.loads((Path(rows["bare"]["local"]["location"]) / "mlops-environment.json").read_text())
    assert marker["spec"]["python"] == f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}"
    assert marker["python_version"].startswith(".".join(map(str, sys.version_info[:3])))
    assert "python:      not pinned: the python that runs mlops" in mlops(project, "env", "show", "bare").stdout
    assert mlops(project, "env", "list").stdout.splitlines()[1].split()[2] == "(running)"


def test_prune_removes_only_what_no_spec_uses(project: Path, mlops: Callable[..., Result], tmp_path: Path) -> None:
    assert mlops(project, "env", "build", "bare").returncode == 0
    assert mlops(project, "env", "build", "tiny").returncode == 0
    envs = project.resolve() / ".mlops" / "envs"
    kept = {p.name for p in envs.iterdir() if not p.name.startswith(".")}
    (project / "environments" / "bare.yaml").write_text(  # bare's old build is now unused
        f"kind: Environment\nname: bare\npython: '{PY}'\nvariables:\n  X: '1'\n")
    old_bare = next(r for r in json.loads(mlops(project, "env", "list", "--output", "json").stdout)["unused_local"])
    (envs / ".tmp-0123456789abcdef-dead").mkdir()  # what a killed build left
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    (envs / "fedcba9876543210").symlink_to(outside, target_is_directory=True)  # a link out: never followed

    dry = mlops(project, "env", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].startswith(f"would remove {envs / '.tmp-0123456789abcdef-dead'} (leftover")
    assert dry.stdout.splitlines()[1].startswith(f"would remove {old_bare} (environment bare, ")
    assert dry.stdout.splitlines()[2].startswith("would free ")
    assert Path(old_bare).is_dir()

    pruned = mlops(project, "env", "prune")
    assert pruned.stdout.splitlines()[1].startswith(f"removed {old_bare} (environment bare, ")
    assert pruned.stdout.splitlines()[-1].startswith("freed ") and " in 2 folder(s)" in pruned.stdout
    assert not Path(old_bare).exists() and not (envs / ".tmp-0123456789abcdef-dead").exists()
    left = {p.name for p in envs.iterdir() if not p.name.startswith(".")}
    assert left == (kept - {Path(old_bare).name}) | {"fedcba9876543210"}
    assert (outside / "keep.txt").read_text() == "mine\n"
    assert mlops(project, "env", "build", "tiny").stdout.startswith("tiny: up to date ")
    assert mlops(project, "env", "prune").stdout == "nothing to prune: every local environment is used by a spec\n"
