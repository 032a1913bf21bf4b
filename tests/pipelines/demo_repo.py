"""A small git repository with a 4-step diamond pipeline of real python scripts.

    prepare ──> left ──┐
           └──> right ─┴──> join        (left and right are independent)

Each step writes a trace file (start/end time) under ``trace/`` so tests can check ordering
and overlap; ``right`` imports a local helper module (``lib/shapes.py``) through a package.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from mlops.spec.model import Pipeline, Step

COMMON = '''
import json, os, sys, time

def trace(step):
    os.makedirs("trace", exist_ok=True)
    start = time.time()
    def done():
        with open(os.path.join("trace", f"{step}.{os.getpid()}.json"), "w") as f:
            json.dump({"start": start, "end": time.time()}, f)
    return done

def params():
    return json.loads(os.environ["MLOPS_PARAMS"])
'''

PREPARE = '''
import sys, time
from common import trace, params
done = trace("prepare")
raw = open(sys.argv[1]).read()
time.sleep(params().get("sleep", 0))
print("preparing", len(raw))
with open(sys.argv[2], "w") as f:
    f.write(raw.upper())
done()
'''

LEFT = '''
import sys, time
from common import trace, params
done = trace("left")
p = params()
time.sleep(p.get("sleep", 0))
with open(sys.argv[2], "w") as f:
    f.write(open(sys.argv[1]).read() + " scaled by " + str(p["scale"]))
done()
'''

RIGHT = '''
import sys, time
from common import trace, params
from lib import shapes
done = trace("right")
time.sleep(params().get("sleep", 0))
with open(sys.argv[2], "w") as f:
    f.write(shapes.describe(open(sys.argv[1]).read()))
done()
'''

SHAPES = '''
"""A helper module imported by right.py only."""
WIDTH = 3

def describe(text):
    return f"{len(text)} chars"
'''

JOIN = '''
import json, os, sys
from common import trace
done = trace("join")
left, right, out, metrics = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "left.txt"), "w") as f:
    f.write(open(left).read())
os.makedirs(os.path.join(out, "nested"), exist_ok=True)
with open(os.path.join(out, "nested", "right.txt"), "w") as f:
    f.write(open(right).read())
with open(metrics, "w") as f:
    json.dump({"chars": len(open(left).read()) + len(open(right).read())}, f)
print("joined")
done()
'''


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test Author", "-c", "user.email=author@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def demo_pipeline(sleep: float = 0.0, scale: int = 2) -> Pipeline:
    d = "pipelines/demo"
    return Pipeline(
        name="demo",
        file="pipelines/demo.yaml",
        params={"sleep": sleep},
        steps=(
            Step("prepare", ("python", f"{d}/prepare.py", "${inputs.raw}", "${outputs.clean}"),
                 inputs={"raw": "data/raw.txt"}, outputs={"clean": "out/clean.txt"}),
            Step("left", ("python", f"{d}/left.py", "${inputs.clean}", "${outputs.left}"),
                 inputs={"clean": "${steps.prepare.outputs.clean}"}, outputs={"left": "out/left.txt"},
                 params={"scale": scale}),
            Step("right", ("python", f"{d}/right.py", "${inputs.clean}", "${outputs.right}"),
                 inputs={"clean": "${steps.prepare.outputs.clean}"}, outputs={"right": "out/right.txt"}),
            Step("join", ("python", f"{d}/join.py", "${inputs.left}", "${inputs.right}", "${outputs.model}",
                          "${outputs.metrics}"),
                 inputs={"left": "${steps.left.outputs.left}", "right": "${steps.right.outputs.right}"},
                 outputs={"model": "out/model", "metrics": "out/metrics.json"}, metrics="metrics"),
        ),
    )


def make_demo_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root, "data/raw.txt", "some raw data\n")
    write(root, "pipelines/demo/common.py", COMMON)
    write(root, "pipelines/demo/prepare.py", PREPARE)
    write(root, "pipelines/demo/left.py", LEFT)
    write(root, "pipelines/demo/right.py", RIGHT)
    write(root, "pipelines/demo/join.py", JOIN)
    write(root, "lib/__init__.py", "")
    write(root, "lib/shapes.py", SHAPES)
    write(root, "README.md", "demo\n")
    write(root, ".gitignore", ".mlops/\nout/\ntrace/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "demo pipeline")
    return root


def traces(root: Path) -> dict[str, dict[str, Any]]:
    """step -> {start, end} of the latest execution of each step."""
    found: dict[str, dict[str, Any]] = {}
    for p in sorted((root / "trace").glob("*.json")):
        data = json.loads(p.read_text())
        step = p.name.split(".")[0]
        if step not in found or data["start"] > found[step]["start"]:
            found[step] = data
    return found
