"""One batch run: read a mini-batch, score it, append its predictions and errors, journal it; repeat.

The output appears at its path only when the run has scored every row (renamed from the partial file in
``.mlops/batch/<endpoint>/``), so a reader never sees half an output. When the rows set aside exceed the
error threshold, the run stops, the errors log is put in place (to say why) and the output is not.
One run per endpoint at a time: a second one is refused while the first holds the endpoint's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops import paths
from mlops.batch import journal as journals
from mlops.batch.job import BatchJob
from mlops.batch.model import BatchModel
from mlops.batch.readers import open_reader
from mlops.batch.writers import Writer, render_errors
from mlops.errors import BatchError

FORMAT = 1  # of the output: bump when the same predictions would be written differently
PARTIAL = "output.partial"
ERRORS_PARTIAL = "errors.partial"
_WFLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

Progress = Callable[[int, int], None]  # (done, total) in the reader's unit


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed
    rows: int  # records read
    errors: int  # records set aside
    output_digest: str | None  # sha256 of the output (None when the run failed)
    resumed_at: int  # records already done by a killed run when this one started (0: from the start)
    seconds: float
    message: str

    @property
    def scored(self) -> int:
        return self.rows - self.errors


@dataclass(frozen=True)
class InputFile:
    """The open input and its digest (the bytes hashed are the bytes scored: one descriptor)."""

    fd: int
    size: int
    digest: str


@contextlib.contextmanager
def opened_input(job: BatchJob) -> Iterator[InputFile]:
    """The job's input, open, with its sha256."""
    fd = job.open_input()
    try:
        h, offset = hashlib.sha256(), 0
        while chunk := os.pread(fd, 1 << 22, offset):
            h.update(chunk)
            offset += len(chunk)
        yield InputFile(fd, offset, h.hexdigest())
    finally:
        os.close(fd)


def identity(job: BatchJob, input_digest: str, model_sha256: str) -> str:
    """What a run's output depends on; a journal of another identity is not resumed."""
    doc = {"format": FORMAT, "input": input_digest, "model": model_sha256, "settings": job.settings()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(workdir: Path, endpoint: str) -> Iterator[None]:
    fd = os.open(workdir / "lock", _WFLAGS, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(f"another batch run of endpoint {endpoint!r} is running (it holds "
                             f"{workdir / 'lock'})") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; so does the kernel when a run is killed


def run(job: BatchJob, model_file: Path, model_sha256: str, what: str, source: InputFile,
        progress: Progress | None = None, threads: int = 1) -> Outcome:
    """Score ``source`` (the job's input) with the ONNX model in ``model_file``; resume a killed run of the
    same identity. ``what`` names the model in messages (``wine-classifier@3``)."""
    started = time.monotonic()
    workdir = job.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    with _locked(workdir, job.endpoint), journals.JournalFile(workdir) as jf:
        reader = open_reader(job.input_format, source.fd, source.size, job.mini_batch_size, job.id_column,
                             job.input_name)
        try:
            model = BatchModel(model_file, what, threads)
            writer = Writer(job.output_format, reader.id_name, reader.id_type, model.bind(reader.columns))
            journal = _resume(jf, workdir, identity(job, source.digest, model_sha256))
            if journal is None:
                journal = journals.Journal(identity(job, source.digest, model_sha256), reader.start)
            resumed_at = journal.rows
            out_fd = os.open(workdir / PARTIAL, _WFLAGS, 0o644)
            err_fd = os.open(workdir / ERRORS_PARTIAL, _WFLAGS, 0o644)
            try:
                stopped = _loop(job, reader, model, writer, journal, jf, out_fd, err_fd, progress)
                if not stopped and journal.output_bytes == 0:  # no record at all: the header alone
                    journal.output_bytes += _append(out_fd, writer.render(_no_ids(reader), model.score(
                        _no_rows(reader)), header=True))
                os.fsync(out_fd)
                os.fsync(err_fd)
            finally:
                os.close(out_fd)
                os.close(err_fd)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        seconds = time.monotonic() - started
        if stopped:
            journal.state = "failed"
            jf.save(journal)
            _place(job, workdir / ERRORS_PARTIAL, job.errors)
            return Outcome("failed", journal.rows, journal.errors, None, resumed_at, seconds,
                           f"stopped after {journal.errors} rows failed (error_threshold {job.error_threshold}) at row "
                           f"{journal.rows}; the errors are in {_shown(job, job.errors)}")
        digest = file_sha256(workdir / PARTIAL)
        _place(job, workdir / PARTIAL, job.output)
        if journal.errors:
            _place(job, workdir / ERRORS_PARTIAL, job.errors)
        else:
            (workdir / ERRORS_PARTIAL).unlink(missing_ok=True)
            _remove(job, job.errors)
        jf.clear()
    note = f", {journal.errors} set aside (see {_shown(job, job.errors)})" if journal.errors else ""
    again = f" (resumed at row {resumed_at + 1})" if resumed_at else ""
    return Outcome("succeeded", journal.rows, journal.errors, digest, resumed_at, seconds,
                   f"scored {journal.rows - journal.errors} of {journal.rows} rows of {job.input_name} with {what}"
                   f"{note} → {job.output_name}{again}")


def _loop(job: BatchJob, reader: Any, model: BatchModel, writer: Writer, journal: journals.Journal,
          jf: journals.JournalFile, out_fd: int, err_fd: int, progress: Progress | None) -> bool:
    """Score every mini-batch from the journal's position on; True when the error threshold stopped it."""
    os.ftruncate(out_fd, journal.output_bytes)
    os.ftruncate(err_fd, journal.errors_bytes)
    os.lseek(out_fd, 0, os.SEEK_END)
    os.lseek(err_fd, 0, os.SEEK_END)
    id_name = reader.id_name if job.id_column else None
    for chunk in reader.chunks(journal.position, journal.rows):
        scored = model.score(chunk.x)
        bad = chunk.bad
        ids = chunk.ids
        if scored.failed:  # rows the model failed on: their numbers and ids, in input order
            import pyarrow as pa

            ids = chunk.ids.filter(pa.array(scored.ok))
            bad = sorted(bad + [(int(chunk.rownos[i]), chunk.ids[i].as_py() if id_name else None, why)
                                for i, why in scored.failed])
        journal.output_bytes += _append(out_fd, writer.render(ids, scored, header=journal.output_bytes == 0))
        if bad:
            journal.errors_bytes += _append(err_fd, render_errors(bad, id_name))
        journal.position = chunk.end
        journal.rows += chunk.rows
        journal.errors += len(bad)
        jf.save(journal)
        if progress is not None:
            progress(chunk.end - reader.start, reader.total - reader.start)
        if 0 <= job.error_threshold < journal.errors:
            return True
    return False


def _resume(jf: journals.JournalFile, workdir: Path, ident: str) -> journals.Journal | None:
    journal = jf.load()
    if journal is None or journal.identity != ident or journal.state != "running":
        return None
    try:
        sizes = (workdir / PARTIAL).stat().st_size, (workdir / ERRORS_PARTIAL).stat().st_size
    except FileNotFoundError:
        return None
    if sizes[0] < journal.output_bytes or sizes[1] < journal.errors_bytes:
        return None  # the partial files lost what the journal says they hold: start over
    return journal


def _no_ids(reader: Any) -> Any:
    import pyarrow as pa

    return pa.array([], type=reader.id_type)


def _no_rows(reader: Any) -> Any:
    import numpy as np

    return np.empty((0, len(reader.columns)))


def _append(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _shown(job: BatchJob, path: Path) -> str:
    return os.path.relpath(path, job.root) if job.in_repo else str(path)


def _place(job: BatchJob, src: Path, dest: Path) -> None:
    """Move a finished partial file to its place: a spec's path through ``TreeWriter`` (no link followed)."""
    if job.output_rel is not None:
        with paths.TreeWriter(job.root) as w:
            w.place(os.path.relpath(dest, job.root), src)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:  # another filesystem
        shutil.move(os.fspath(src), dest)


def _remove(job: BatchJob, dest: Path) -> None:
    """Remove a stale errors log of an earlier run (only ours: the path passed the output checks)."""
    if job.output_rel is not None:
        with paths.TreeWriter(job.root) as w:
            w.remove(os.path.relpath(dest, job.root))
    else:
        dest.unlink(missing_ok=True)
