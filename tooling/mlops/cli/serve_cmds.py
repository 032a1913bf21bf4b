"""`mlops serve MODEL.onnx`: serve one model file in the foreground (Open Inference Protocol)."""

from __future__ import annotations

import sys

import click


@click.command("serve")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to bind (0: a free one, printed at start).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: one per core).")
@click.option("--name", default=None, help="Endpoint name in the URLs (default: the file's name).")
def serve(model: str, host: str, port: int, workers: int | None, name: str | None) -> None:
    """Serve an .onnx model file until Ctrl-C: POST /v2/models/NAME/infer, no keys.

    For trying a model out; endpoints declared in the repository are deployed by `mlops reconcile`.
    """
    import os
    from pathlib import Path

    from mlops.serving.dev import serve_file

    sys.exit(serve_file(Path(model), host, port, workers or os.cpu_count() or 1, name))
