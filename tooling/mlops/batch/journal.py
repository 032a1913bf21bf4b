"""The progress of a batch run, so that a killed run resumes at its last completed mini-batch.

A run appends each mini-batch's predictions (and errors) to partial files in ``.mlops/batch/<endpoint>/``,
then replaces ``progress.json`` atomically with where the input's next mini-batch starts, how many rows
and errors there were so far, and the partial files' sizes. A run killed at any moment leaves a journal
that names a completed mini-batch: the next run with the same identity (input digest, model digest and
settings) cuts the partial files back to the recorded sizes and goes on from there. Anything else (a
damaged journal, another identity, a failed or finished run) starts from the beginning: starting over
is always correct, only slower.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops import paths

FORMAT = 1
NAME = "progress.json"


@dataclass
class Journal:
    identity: str  # sha256 of the input digest, the model digest and the settings
    position: int  # where the next mini-batch starts (byte offset or row number)
    rows: int = 0  # records done (scored or set aside)
    errors: int = 0  # records set aside
    output_bytes: int = 0
    errors_bytes: int = 0
    state: str = "running"  # running | failed

    def save(self, workdir: Path) -> None:
        paths.write_atomic(workdir / NAME, json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True).encode())


def load(workdir: Path) -> Journal | None:
    """The journal in ``workdir``, or None when there is none or it cannot be trusted."""
    try:
        raw = json.loads((workdir / NAME).read_bytes()[:1 << 16])
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        journal = Journal(identity=str(raw["identity"]), position=raw["position"], rows=raw["rows"],
                          errors=raw["errors"], output_bytes=raw["output_bytes"], errors_bytes=raw["errors_bytes"],
                          state=str(raw["state"]))
    except (KeyError, TypeError):
        return None
    numbers = (journal.position, journal.rows, journal.errors, journal.output_bytes, journal.errors_bytes)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return None
    return journal


def clear(workdir: Path) -> None:
    """Forget the run (it finished: its partial files are now the output)."""
    (workdir / NAME).unlink(missing_ok=True)
