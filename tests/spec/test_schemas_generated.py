"""The shipped JSON Schemas are exactly what tooling/scripts/gen_schemas.py generates (no hand edits drift)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_schemas_match_the_generator() -> None:
    gen = runpy.run_path(str(ROOT / "tooling/scripts/gen_schemas.py"), run_name="not_main")
    shipped = ROOT / "tooling/mlops/spec/schemas"
    for kind in ("project", "environment", "dataset", "pipeline", "model", "endpoint"):
        assert json.loads((shipped / f"{kind}.json").read_text()) == gen[kind.upper()], kind
