"""The progress of a batch run, so that a killed run resumes at its last completed mini-batch.

A run appends each mini-batch's predictions (and errors) to partial files in ``.mlops/batch/<endpoint>/``,
then records in ``progress.journal`` where the input's next mini-batch starts, how many rows and errors
there were so far, and the partial files' sizes. The journal has two slots, written in turn with one
``pwrite`` each and checksummed: a write cut short (even by a power loss) spoils at most the slot being
written, and the other still names a completed mini-batch. (One write per mini-batch, where a temporary
file renamed into place would cost a rename and leave a stray file whenever a run is killed.)

The next run with the same identity (input digest, model digest and settings) cuts the partial files back
to the recorded sizes and goes on from there. Anything else (no valid slot, another identity, a failed run,
partial files shorter than recorded) starts from the beginning: starting over is always correct, only slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FORMAT = 1
NAME = "progress.journal"
SLOT = 1024  # bytes per slot: far more than a record needs
_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Journal:
    identity: str  # sha256 of the input digest, the model digest and the settings
    position: int  # where the next mini-batch starts (byte offset or row number)
    rows: int = 0  # records done (scored or set aside)
    errors: int = 0  # records set aside
    output_bytes: int = 0
    errors_bytes: int = 0
    state: str = "running"  # running | failed
    seq: int = 0  # bumped by every save: the newer of the two slots wins


class JournalFile:
    """The open journal of one endpoint's runs (use as a context manager)."""

    def __init__(self, workdir: Path):
        self.path = workdir / NAME
        self.fd = os.open(self.path, _FLAGS, 0o644)

    def __enter__(self) -> JournalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def load(self) -> Journal | None:
        """The newest valid slot, or None when there is none."""
        return _newest(os.pread(self.fd, 2 * SLOT, 0))

    def save(self, journal: Journal) -> None:
        journal.seq += 1
        body = json.dumps({"format": FORMAT, **asdict(journal)}, sort_keys=True).encode()
        slot = body + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n"
        if len(slot) > SLOT:
            raise ValueError("journal record too large")  # cannot happen: a few numbers and a digest
        os.pwrite(self.fd, slot.ljust(SLOT, b" "), (journal.seq % 2) * SLOT)

    def clear(self) -> None:
        """Forget the run (it finished: its partial files are now the output)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _parse(slot: bytes) -> Journal | None:
    body, _, rest = slot.partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != rest.split(b"\n", 1)[0]:
        return None  # empty, torn or damaged
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    names = {f.name for f in fields(Journal)}
    if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT or set(raw) != names:
        return None
    journal = Journal(**raw)
    numbers = (journal.position, journal.rows, journal.errors, journal.output_bytes, journal.errors_bytes, journal.seq)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or \
            not isinstance(journal.identity, str) or journal.state not in ("running", "failed"):
        return None
    return journal


def read(workdir: Path) -> Journal | None:
    """The journal in ``workdir`` without creating it (for status and tests): None when there is none."""
    try:
        fd = os.open(workdir / NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        return _newest(os.pread(fd, 2 * SLOT, 0))
    finally:
        os.close(fd)


def _newest(data: bytes) -> Journal | None:
    found = [j for j in (_parse(data[i * SLOT:(i + 1) * SLOT]) for i in (0, 1)) if j is not None]
    return max(found, key=lambda j: j.seq) if found else None
