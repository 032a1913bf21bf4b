"""``system_site_packages`` means the packages of the python that runs mlops, also when that python is a
virtualenv (``python3 -m venv``, then ``pip install``): the README's first command in a fresh venv.

mlops runs here inside a real virtualenv whose base interpreter lacks ``tinypkg``, while the
virtualenv has it; pip is offline, so only the running python's copy can satisfy the requirement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from mlops import host
from tests.environments.wheels import make_wheel

pytestmark = pytest.mark.usefixtures("offline_pip")
ROOT = Path(__file__).resolve().parents[2]

# Realise an environment from inside the outer virtualenv and describe it as JSON.
REALISE = """
import json, subprocess, sys
from pathlib import Path
from mlops.environments.local import realise_local
from mlops.spec.model import Environment
env = Environment(name="site", requirements=("tinypkg",), system_site_packages=True)
r = realise_local(env, Path(sys.argv[1]))
clean = {k: v for k, v in r.environ().items() if k != "PYTHONPATH"}
probe = subprocess.run([r.python, "-c", "import tinypkg; print(tinypkg.VERSION)"], env=clean,
                       capture_output=True, text=True)
print(json.dumps({"identity": r.identity, "spec_identity": r.spec_identity, "built": r.built,
                  "location": r.location, "tinypkg": probe.stdout.strip() or probe.stderr.strip()[-300:]}))
"""


@pytest.fixture
def outer(tmp_path: Path) -> tuple[Path, Path]:
    """A virtualenv (python, site-packages) with tinypkg installed, made from the interpreter running the tests."""
    where = tmp_path / "outer-venv"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(where)
    site = next(where.glob("lib/*/site-packages"))
    with zipfile.ZipFile(make_wheel(tmp_path / "wheels", "tinypkg", "0.1")) as zf:
        zf.extractall(site)  # what installing a pure wheel amounts to
    return where / "bin" / "python", site


def realise(python: Path, repo: Path) -> dict[str, object]:
    # mlops and its dependencies come from the test interpreter through PYTHONPATH: that is the
    # caller's setting, which the environment must not mistake for packages it reuses.
    paths = [str(ROOT / "tooling"), *host.site_dirs(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run([str(python), "-c", REALISE, str(repo)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_environment_reuses_the_packages_of_the_virtualenv_mlops_runs_in(outer: tuple[Path, Path],
                                                                         repo: Path) -> None:
    python, site = outer
    base_has_it = subprocess.run([sys.executable, "-I", "-c", "import tinypkg"], capture_output=True).returncode == 0
    assert not base_has_it
    first = realise(python, repo)
    assert first["built"] is True
    assert first["tinypkg"] == "0.1"  # offline: found in the outer virtualenv, not installed again
    assert not list(Path(str(first["location"])).glob("lib/*/site-packages/tinypkg"))
    marker = json.loads((Path(str(first["location"])) / "mlops-environment.json").read_text())
    assert str(site) in marker["reused_paths"]
    assert first["identity"] != first["spec_identity"]  # the reused packages are part of what steps run with

    again = realise(python, repo)
    assert (again["built"], again["identity"]) == (False, first["identity"])

    (site / "newpkg-2.0.dist-info").mkdir()  # pip installed something into the outer virtualenv
    changed = realise(python, repo)
    assert changed["built"] is False and changed["location"] == first["location"]
    assert changed["identity"] != first["identity"] and changed["spec_identity"] == first["spec_identity"]
