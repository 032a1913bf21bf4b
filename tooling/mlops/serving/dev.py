"""``mlops serve MODEL.onnx``: one model file served in the foreground, for trying a model out.

It writes a server directory in a temporary folder (config.json, the model copied into models/),
without keys, and runs the server there until Ctrl-C; the folder is removed afterwards.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from mlops.errors import ServingError
from mlops.serving.config import Batching, DeploymentConfig, ServerConfig


def serve_file(model: Path, host: str, port: int, workers: int, name: str | None = None) -> int:
    """Serve ``model`` (an .onnx file) until interrupted; the exit code."""
    from mlops.serving.supervisor import Supervisor

    model = Path(model)
    if not model.is_file():
        raise ServingError(f"{model}: no such file")
    data = model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    endpoint = name or (re.sub(r"[^A-Za-z0-9._-]", "-", model.stem).strip("-._") or "model")
    directory = Path(tempfile.mkdtemp(prefix="mlops-serve-"))
    try:
        (directory / "models").mkdir()
        (directory / "models" / f"{digest}.onnx").write_bytes(data)
        cfg = ServerConfig(endpoint=endpoint[:63], generation=1, host=host, port=port, workers=workers,
                           deployments=(DeploymentConfig(name="default", model=endpoint[:63], version=1,
                                                         path=f"models/{digest}.onnx", sha256=digest,
                                                         batching=Batching()),),
                           traffic={"default": 100})
        path = cfg.write(directory)
        return Supervisor(path, cfg).run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
