"""Importing monitoring stays cheap: the package imports nothing heavy, and a report on large data
never imports scipy (only the KS test of small references does)."""

from __future__ import annotations

import subprocess
import sys


def imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_package_imports_nothing_heavy() -> None:
    mods = imported_after("import mlops.monitoring")
    assert not {"numpy", "pyarrow", "scipy"} & mods


def test_a_large_report_does_not_import_scipy() -> None:
    code = """
import numpy as np, pyarrow as pa
from mlops.monitoring import drift
rng = np.random.default_rng(0)
t = lambda s: pa.table({"x": rng.normal(s, 1, 2000), "c": rng.choice(["a", "b", "c"], 2000)})
assert drift.drift_report(t(0), t(1))["features"][0]["test"] == "wasserstein"
"""
    assert "scipy" not in imported_after(code)
