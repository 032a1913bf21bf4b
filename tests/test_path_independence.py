"""The tests do not depend on ``python``/``python3`` on PATH being a working interpreter.

pyenv puts shims for every installed version on PATH; a shim of a version that is not activated
fails. Tests must use ``sys.executable`` (or what mlops resolves), never whatever PATH offers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIM = "#!/bin/sh\necho \"pyenv: $(basename \"$0\"): command not found\" >&2\nexit 127\n"


@pytest.mark.slow
def test_step_tests_pass_when_python_on_path_is_a_broken_shim(tmp_path: Path) -> None:
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("python", "python3", f"python3.{sys.version_info[1]}"):
        (shims / name).write_text(SHIM)
        (shims / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
         "step_environment_interpreter or run_record_fields", "tests/pipelines/test_runner.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
