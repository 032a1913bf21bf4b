"""Local environments: real virtualenvs, real pip, no network (pip is kept offline by ``offline_pip``)."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.environments.identity import environment_identity, repo_reader
from mlops.environments.interpreter import find_interpreter
from mlops.environments.local import MARKER, RealisedEnvironment, find_local, list_local, realise_local
from mlops.errors import EnvironmentBuildError
from mlops.spec.model import Environment
from tests.environments.wheels import make_wheel

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
WHEEL = "wheels/tinypkg-0.1-py3-none-any.whl"

pytestmark = pytest.mark.usefixtures("offline_pip")


def run(env: RealisedEnvironment, code: str) -> str:
    proc = subprocess.run([env.python, "-c", code], env=env.environ(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def can_import(env: RealisedEnvironment, module: str) -> bool:
    return subprocess.run([env.python, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.fixture
def wheel_repo(repo: Path) -> Path:
    make_wheel(repo / "wheels", "tinypkg", "0.1", scripts={"tiny-hello": "tinypkg:main"})
    return repo


def test_empty_environment_is_built_once(repo: Path) -> None:
    env = Environment(name="empty", python=PY, variables={"MODE": "test"})
    started = time.monotonic()
    first = realise_local(env, repo)
    built_s = time.monotonic() - started
    identity = environment_identity(env, repo_reader(repo))
    assert first.built is True and first.identity == identity
    assert first.location == str(repo.resolve() / ".mlops" / "envs" / identity[:16])
    assert os.path.isabs(first.python) and first.python.startswith(first.bin_dir)
    assert run(first, "import sys, os; print(sys.prefix, os.environ['MODE'])") == f"{first.location} test"
    assert not can_import(first, "yaml")  # isolated from the host's packages
    marker = json.loads((Path(first.location) / MARKER).read_text())
    assert marker["identity"] == identity and marker["names"] == ["empty"]

    inode = os.stat(first.location).st_ino
    started = time.monotonic()
    second = realise_local(env, repo)
    cached_s = time.monotonic() - started
    assert second == dataclasses.replace(first, built=False)
    assert os.stat(second.location).st_ino == inode
    print(f"\nlocal empty env: first build {built_s * 1000:.0f} ms, cached {cached_s * 1000:.2f} ms")


def test_requirement_from_a_local_wheel_is_installed(wheel_repo: Path) -> None:
    env = Environment(name="tiny", python=PY, requirements=(WHEEL,))
    started = time.monotonic()
    realised = realise_local(env, wheel_repo)
    built_s = time.monotonic() - started
    assert run(realised, "import tinypkg; print(tinypkg.VERSION)") == "0.1"
    # The console script was written in a temporary directory, then moved: its shebang must follow.
    script = Path(realised.bin_dir) / "tiny-hello"
    assert script.read_text().splitlines()[0] == f"#!{realised.python}"
    assert subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout == "tinypkg 0.1\n"
    assert str(Path(realised.location)) in (Path(realised.bin_dir) / "activate").read_text()
    started = time.monotonic()
    assert realise_local(env, wheel_repo).built is False
    print(f"\nlocal env with one wheel: first build {built_s:.2f} s, "
          f"cached {(time.monotonic() - started) * 1000:.2f} ms")


def test_system_site_packages_satisfy_requirements_from_the_host(repo: Path) -> None:
    env = Environment(name="host", python=PY, requirements=("pyyaml",), system_site_packages=True)
    realised = realise_local(env, repo)  # offline: only the host's copy can satisfy it
    where = run(realised, "import yaml; print(yaml.__file__)")
    assert not where.startswith(realised.location)


def test_lockfile_is_installed_and_its_content_is_the_identity(wheel_repo: Path) -> None:
    (wheel_repo / "env.lock").write_text(f"# pinned\n{WHEEL}\n")
    env = Environment(name="locked", python=PY, lockfile="env.lock")
    first = realise_local(env, wheel_repo)
    assert run(first, "import tinypkg; print(tinypkg.VERSION)") == "0.1"

    (wheel_repo / "env.lock").write_text(f"# pinned, re-generated\n\n{WHEEL}\n")
    assert realise_local(env, wheel_repo) == dataclasses.replace(first, built=False)

    make_wheel(wheel_repo / "wheels", "tinypkg", "0.2")
    (wheel_repo / "env.lock").write_text("wheels/tinypkg-0.2-py3-none-any.whl\n")
    assert find_local(env, wheel_repo) is None
    second = realise_local(env, wheel_repo)
    assert second.built is True and second.location != first.location
    assert run(second, "import tinypkg; print(tinypkg.VERSION)") == "0.2"
    assert run(first, "import tinypkg; print(tinypkg.VERSION)") == "0.1"  # the old one is untouched


def test_pip_failure_reports_pip_and_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = Environment(name="broken", python=PY, requirements=("mlops-no-such-package-xyz",),
                      file="environments/broken.yaml")
    with pytest.raises(EnvironmentBuildError) as info:
        realise_local(env, repo, cache_root=cache)
    message = str(info.value)
    assert "'broken' (environments/broken.yaml): pip install failed" in message
    assert "No matching distribution found for mlops-no-such-package-xyz" in message
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    assert find_local(env, repo, cache_root=cache) is None


def test_unavailable_python_is_a_clear_error(repo: Path) -> None:
    env = Environment(name="future", python="3.99", file="environments/future.yaml")
    with pytest.raises(EnvironmentBuildError, match=r"'future' .* needs python 3\.99.*no python3\.99 was found on PATH"):
        realise_local(env, repo)
    with pytest.raises(EnvironmentBuildError) as info:
        realise_local(env, repo)
    assert str(info.value).endswith(
        "Install it (`pyenv install 3.99`, `apt-get install python3.99 python3.99-venv` or `uv python install 3.99`) "
        "so that python3.99 is on PATH, or remove `python:` from environments/future.yaml to use the running python")


def test_a_pyenv_shim_that_refuses_falls_back_to_pyenv_s_own_build(repo: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("no python other than the running one is installed")
    version, path = other
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / f"python{version}").write_text(f"#!/bin/sh\necho 'pyenv: python{version}: command not found' >&2\nexit 127\n")
    (shims / f"python{version}").chmod(0o755)
    build = tmp_path / "pyenv" / "versions" / f"{version}.9" / "bin"
    build.mkdir(parents=True)
    (build / f"python{version}").symlink_to(path)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    assert find_interpreter(Environment(name="other", python=version)) == str(build / f"python{version}")
    (build / f"python{version}").unlink()
    with pytest.raises(EnvironmentBuildError, match=rf"shims/python{version} does not work: pyenv: python{version}: "
                                                    "command not found"):
        find_interpreter(Environment(name="other", python=version))


def test_an_environment_without_python_uses_the_running_interpreter(repo: Path) -> None:
    env = Environment(name="unpinned", file="environments/unpinned.yaml")
    assert find_interpreter(env) == sys.executable
    realised = realise_local(env, repo)
    version = ".".join(map(str, sys.version_info[:3]))
    assert run(realised, "import sys; print('%d.%d.%d' % sys.version_info[:3])") == version
    spec = json.loads((Path(realised.location) / MARKER).read_text())["spec"]
    assert spec["python"] == f"{sys.implementation.name}-{version}"  # the identity records the exact version


def _other_python() -> tuple[str, str] | None:
    """Another installed CPython >= 3.8 (not the running one), as (X.Y, path); pyenv keeps several."""
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split("."))

    found: dict[str, str] = {}
    for candidate in glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3.*")):
        version = Path(candidate).name.removeprefix("python")
        if re.fullmatch(r"3\.\d+", version) and os.access(candidate, os.X_OK):
            found[version] = candidate
    for version in ("3.10", "3.12", "3.13"):
        path = shutil.which(f"python{version}")
        if path and version not in found and subprocess.run([path, "-V"], capture_output=True).returncode == 0:
            found[version] = path
    usable = sorted((v for v in found if v != PY and key(v) >= (3, 8)), key=key)
    return (usable[-1], found[usable[-1]]) if usable else None


def test_other_python_version_is_found_on_path(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("no python other than the running one is installed")
    version, path = other
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{version}").symlink_to(path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    realised = realise_local(Environment(name="other", python=version), repo)
    assert run(realised, "import sys; print('%d.%d' % sys.version_info[:2])") == version


def test_same_content_under_two_names_is_one_environment(repo: Path) -> None:
    a = Environment(name="a", python=PY, variables={"X": "1"})
    b = dataclasses.replace(a, name="b", file="environments/b.yaml")
    assert find_local(a, repo) is None
    ra = realise_local(a, repo)
    rb = realise_local(b, repo)
    assert rb.built is False and rb.location == ra.location and rb.name == "b"
    assert find_local(b, repo) == rb
    listed = list_local(repo / ".mlops" / "envs")
    assert [(r.name, r.location, r.variables) for r in listed] == [("a", ra.location, {"X": "1"}),
                                                                    ("b", ra.location, {"X": "1"})]


def test_concurrent_realisations_build_once(wheel_repo: Path) -> None:
    env = Environment(name="tiny", python=PY, requirements=(WHEEL,))
    results: list[RealisedEnvironment] = []
    threads = [threading.Thread(target=lambda: results.append(realise_local(env, wheel_repo))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.built for r in results) == [False, True]
    assert results[0].location == results[1].location


def test_leftovers_of_dead_builds_are_removed(repo: Path) -> None:
    env = Environment(name="e", python=PY)
    identity = environment_identity(env, repo_reader(repo))
    cache = repo / ".mlops" / "envs"
    half = cache / identity[:16]  # a directory without marker: not reusable, must be rebuilt
    (half / "bin").mkdir(parents=True)
    stale_mine = cache / f".tmp-{identity[:16]}-abc"
    stale_other = cache / ".tmp-0123456789abcdef-xyz"
    for d in (stale_mine, stale_other):
        d.mkdir()
    assert find_local(env, repo) is None
    realised = realise_local(env, repo)
    assert realised.built is True and Path(realised.python).exists()
    assert not stale_mine.exists() and not stale_other.exists()


@pytest.fixture
def hanging_index() -> Iterator[tuple[str, threading.Event]]:
    """An 'index' on 127.0.0.1 that accepts connections and never answers: pip waits forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    contacted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            contacted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple", contacted
    server.close()
    for conn in held:
        conn.close()


def test_killed_build_is_never_reused(wheel_repo: Path, hanging_index: tuple[str, threading.Event],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url, contacted = hanging_index
    env = Environment(name="tiny", python=PY, requirements=("tinypkg",))
    cache = wheel_repo / ".mlops" / "envs"
    code = ("import sys; from pathlib import Path; from mlops.spec.model import Environment; "
            "from mlops.environments.local import realise_local; "
            f"realise_local(Environment(name='tiny', python={PY!r}, requirements=('tinypkg',)), Path(sys.argv[1]))")
    child_env = {**os.environ, "PIP_INDEX_URL": url, "PIP_TIMEOUT": "60", "PIP_RETRIES": "0"}
    child_env.pop("PIP_NO_INDEX")
    proc = subprocess.Popen([sys.executable, "-c", code, str(wheel_repo)], env=child_env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert contacted.wait(60), "pip never reached the index"
        assert len(list(cache.glob(".tmp-*"))) == 1  # the build in progress
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its pip, as a power cut would
        proc.wait()
    assert find_local(env, wheel_repo) is None
    assert list_local(cache) == []

    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel_repo / "wheels"))
    realised = realise_local(env, wheel_repo)
    assert realised.built is True
    assert run(realised, "import tinypkg; print(tinypkg.VERSION)") == "0.1"
    assert list(cache.glob(".tmp-*")) == []


def test_environ_activates_the_environment(repo: Path) -> None:
    realised = realise_local(Environment(name="v", python=PY, variables={"PYTHONHASHSEED": "7"}), repo)
    environ = realised.environ({"PATH": "/usr/bin", "PYTHONHOME": "/elsewhere"})
    assert environ == {"PATH": f"{realised.bin_dir}{os.pathsep}/usr/bin", "VIRTUAL_ENV": realised.location,
                       "PYTHONHASHSEED": "7"}
    out = subprocess.run(["python", "-c", "import sys; print(sys.prefix)"], env=realised.environ(),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == realised.location


def test_pip_options_are_refused_before_anything_runs(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = Environment(name="evil", requirements=("numpy", "-r/etc/shadow"), file="environments/evil.yaml")
    with pytest.raises(EnvironmentBuildError) as info:
        realise_local(env, repo, cache_root=cache)
    assert str(info.value) == ("environments/evil.yaml: $.requirements[1]: '-r/etc/shadow' is a pip option, not a "
                               "requirement (only PEP 508 requirements or local wheels)")
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_lockfile_options_are_refused_with_their_line(wheel_repo: Path) -> None:
    (wheel_repo / "env.lock").write_text(f"{WHEEL}\n# a comment\n--extra-index-url https://evil.example/simple\n")
    env = Environment(name="locked", lockfile="env.lock", file="environments/locked.yaml")
    with pytest.raises(EnvironmentBuildError, match=r"^env\.lock:3: option --extra-index-url is not allowed in a "
                                                    r"lockfile.*\(lockfile of environment 'locked'\)$"):
        realise_local(env, wheel_repo)
    assert find_local(env, wheel_repo) is None


def test_a_wheel_that_leads_outside_through_a_symlink_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = make_wheel(tmp_path / "outside", "tinypkg", "0.1")
    (repo / "wheels").symlink_to(outside.parent, target_is_directory=True)
    env = Environment(name="tiny", requirements=(WHEEL,), file="environments/tiny.yaml")
    with pytest.raises(EnvironmentBuildError, match=r"\$\.requirements\[0\]: .* leads outside the repository"):
        realise_local(env, repo)


def test_pip_gets_the_checked_lockfile_with_its_hashes(wheel_repo: Path) -> None:
    digest = hashlib.sha256((wheel_repo / WHEEL).read_bytes()).hexdigest()
    (wheel_repo / "env.lock").write_text(f"# pip-compile --generate-hashes\n{WHEEL} \\\n    --hash=sha256:{digest}\n")
    env = Environment(name="hashed", lockfile="env.lock")
    assert run(realise_local(env, wheel_repo), "import tinypkg; print(tinypkg.VERSION)") == "0.1"
    (wheel_repo / "env.lock").write_text(f"{WHEEL} --hash=sha256:{'0' * 64}\n")
    with pytest.raises(EnvironmentBuildError, match="(?i)hash"):  # pip checked the hash it was given
        realise_local(env, wheel_repo)
