"""LocalStore: the artifact store in a local directory (``.mlops/`` by default).

Layout::

    ROOT/blobs/sha256/ab/abcdef...   one file per blob, named by its digest
    ROOT/records/<key>               one file per record

Every write goes to a ``.tmp-*`` file in the destination directory, is fsynced, then
renamed (blobs, overwritten records) or hard-linked (``create_record``) into place, so a
crash never leaves a partial file under a final name. Readers ignore ``.tmp-*`` files;
``gc_temp()`` removes the ones a crashed writer left behind.

A put of content whose blob is already there re-hashes that blob and replaces it when it is
corrupt (one extra read), so storing the same content again repairs a damaged store instead of
"succeeding" on top of it. Failures of the file system (read-only, full, no permission) are
StoreErrors that name the store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from mlops.errors import IntegrityError, StoreError
from mlops.store.digest import iter_chunks, sha256_bytes, sha256_file
from mlops.store.keys import check_digest, check_key, is_key

TEMP_PREFIX = ".tmp-"


def _temp_name(directory: Path) -> Path:
    return directory / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_hashed(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` (fsynced), returning the sha256 of the bytes actually copied."""
    h = hashlib.sha256()
    with open(src, "rb") as s, open(dest, "wb") as d:
        for chunk in iter_chunks(s):
            h.update(chunk)
            d.write(chunk)
        d.flush()
        os.fsync(d.fileno())
    return h.hexdigest()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class LocalStore:
    """A content-addressed store in a directory. Safe for concurrent use by several processes."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self._blobs = self.root / "blobs" / "sha256"
        self._records = self.root / "records"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- blobs -------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``digest`` lives (whether or not it exists)."""
        check_digest(digest)
        return self._below(f"blobs/sha256/{digest[:2]}/{digest}")

    def _below(self, rel: str) -> Path:
        """``ROOT/rel``; StoreError when a link is on the way (or is ``rel`` itself): the store is read,
        written and swept only where it is, never where a link planted in it points."""
        from mlops import paths
        from mlops.errors import PathError

        try:
            return paths.no_links_below(self.root, rel)
        except PathError as e:
            raise StoreError(f"the store {self.url} is damaged: {e}") from None

    def put_file(self, path: Path) -> str:
        """Store a file's bytes; return its sha256. An existing blob is verified (and repaired if corrupt)."""
        try:
            digest = sha256_file(path)
            size = path.stat().st_size
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
        final = self.blob_path(digest)
        if self._is_sound(final, digest, size):
            return digest
        with self._writing(f"blob {digest}"):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_name(final.parent)
            try:
                if _copy_hashed(path, tmp) != digest:
                    # The source changed while we copied it: storing it under either digest would lie.
                    raise StoreError(f"{path} changed while it was being stored; try again")
                os.replace(tmp, final)
            except BaseException:
                _remove(tmp)
                raise
        _fsync_dir(final.parent)
        return digest

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their sha256. Idempotent; an existing blob is verified (and repaired)."""
        digest = sha256_bytes(data)
        final = self.blob_path(digest)
        if self._is_sound(final, digest, len(data)):
            return digest
        with self._writing(f"blob {digest}"):
            final.parent.mkdir(parents=True, exist_ok=True)
            self._write_temp_then(final.parent, data, lambda tmp: os.replace(tmp, final))
        return digest

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def get_file(self, digest: str, dest: Path) -> None:
        """Copy the blob to ``dest`` atomically, verifying its digest while copying."""
        src = self._existing_blob(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_name(dest.parent)
        try:
            self._verify(digest, _copy_hashed(src, tmp), src)
            os.replace(tmp, dest)
        except BaseException:
            _remove(tmp)
            raise

    def get_bytes(self, digest: str) -> bytes:
        src = self._existing_blob(digest)
        data = src.read_bytes()
        self._verify(digest, sha256_bytes(data), src)
        return data

    def gc_temp(self, older_than: float = 3600.0) -> int:
        """Remove temp files older than ``older_than`` seconds (left by crashed writers). Returns the count.

        The age threshold keeps us from deleting a file another process is still writing.
        """
        cutoff = time.time() - older_than
        removed = 0
        for top in (self._below("blobs/sha256"), self._below("records")):
            if not top.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    if not name.startswith(TEMP_PREFIX):
                        continue
                    p = Path(dirpath) / name
                    with contextlib.suppress(FileNotFoundError):
                        if p.stat().st_mtime <= cutoff:
                            p.unlink()
                            removed += 1
        return removed

    # -- records -----------------------------------------------------------------------
    def _record_path(self, key: str) -> Path:
        return self._below(f"records/{check_key(key)}")

    def read_record(self, key: str) -> bytes | None:
        try:
            return self._record_path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError as e:
            raise StoreError(f"record {key!r} in {self.url} is a directory of other records") from e
        except OSError as e:
            raise StoreError(f"cannot read record {key!r} in {self.url}: {e.strerror or e}") from e

    def create_record(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if absent. A hard link fails atomically if the name exists,
        and the content is complete before the link is made."""
        final = self._record_path(key)
        created = True

        def link(tmp: Path) -> None:
            nonlocal created
            try:
                os.link(tmp, final)
            except FileExistsError:
                created = False
            finally:
                _remove(tmp)

        with self._writing(f"record {key!r}"):
            self._mkdir(final.parent, key)
            self._write_temp_then(final.parent, data, link)
        return created

    def write_record(self, key: str, data: bytes) -> None:
        final = self._record_path(key)
        with self._writing(f"record {key!r}"):
            self._mkdir(final.parent, key)
            self._write_temp_then(final.parent, data, lambda tmp: os.replace(tmp, final))

    def delete_record(self, key: str) -> None:
        path = self._record_path(key)
        with self._writing(f"record {key!r}"), contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)

    def list_records(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``, sorted. Walks only the directory the prefix points into."""
        head, _, _ = prefix.rpartition("/")
        if head and any(not part or part.startswith(".") for part in head.split("/")):
            return iter(())  # no key has such a segment (and it must not lead outside the store)
        top = self._below(f"records/{head}")
        if not top.is_dir():
            return iter(())
        keys: list[str] = []
        for dirpath, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self._records).as_posix()
            for name in files:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and is_key(key):
                    keys.append(key)
        return iter(sorted(keys))

    # -- internals ---------------------------------------------------------------------
    def _mkdir(self, directory: Path, key: str) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as e:
            raise StoreError(f"cannot store record {key!r} in {self.url}: a parent is itself a record") from e

    def _write_temp_then(self, directory: Path, data: bytes, finish: Callable[[Path], None]) -> None:
        tmp = _temp_name(directory)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            finish(tmp)
        except BaseException:
            _remove(tmp)
            raise
        _fsync_dir(directory)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn the file system's refusals (read-only, full, permissions) into one clear StoreError."""
        try:
            yield
        except StoreError:
            raise
        except OSError as e:
            hint = " (the store is read-only: make it writable, or point stores.artifacts elsewhere)" \
                if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else ""
            raise StoreError(f"cannot write {what} to {self.url}: {e.strerror or e}{hint}") from e

    def _is_sound(self, final: Path, digest: str, size: int) -> bool:
        """Whether the blob exists with exactly the content its name says (a damaged one is replaced)."""
        try:
            if final.stat().st_size != size:
                return False
            return sha256_file(final) == digest
        except OSError:  # missing or unreadable: write it (again)
            return False

    def _existing_blob(self, digest: str) -> Path:
        src = self.blob_path(digest)
        if not src.is_file():
            raise StoreError(f"blob {digest} is not in {self.url} (expected at {src})")
        return src

    def _verify(self, digest: str, actual: str, location: Path) -> None:
        if actual != digest:
            raise IntegrityError(f"blob {digest} at {location} is corrupt: its content hashes to {actual}; "
                                 "storing the same content again (re-register or re-run what produced it) "
                                 "repairs it")
