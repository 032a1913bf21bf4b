"""GitStore: the whole artifact store (records and blobs) as git objects under ``refs/mlops/`` on origin.

Nothing to run and nothing to pay for: state survives an ephemeral CI runner because it is pushed
to the repository's own remote, where ordinary clones never fetch it (their refspec is
``refs/heads/*``). Layout, in the remote and mirrored in the clone::

    refs/mlops/records/<key>                  one git blob per record (its bytes)
    refs/mlops/blobs/sha256/<ab>/<digest>     one git blob per artifact, named by its sha256

**When git talks to the remote.** Records are fetched together, once per command: the first record
read fetches ``refs/mlops/records/*`` (one ``git fetch --prune``) and loads every record with one
``git cat-file --batch``; later reads are answered from memory until ``refresh_seconds`` have passed,
or at once after a ``create_record`` found its key taken (someone else wrote meanwhile). Every push
is one ``git push --atomic`` carrying everything not pushed yet (blobs first stored here, deferred
record writes), so a record never reaches the remote before the blobs it names. ``create_record``
and ``delete_record`` push at once; ``write_record`` pushes at once too, or with ``write_delay``
(the CLI's 0.5 s) within that delay, so a burst of writes (a pipeline's cache entries) is one push
while readers in this process see the writes immediately. ``create_record`` pushes with
``--force-with-lease=<ref>:`` ("the ref must not exist yet"): the remote checks that inside its ref
transaction, so of two creators on any two machines exactly one wins and nothing is lost. Blobs
are fetched one by one when first needed (``get_*``; ``has_blob`` lists the remote's blob names
once), never all at once; what no push carried yet is pushed by ``flush()``, which the CLI calls
after every command (and an ``atexit`` hook as a last resort).

**Limits.** A blob over ``max_blob_bytes`` (50 MiB by default; GitHub warns at 50 MB and refuses
files over 100 MB, so at most 100 MiB) and a record over 4 MiB are refused with a StoreError that
says to keep large artifacts in S3. Reads are verified: a blob's content must hash to the digest
its ref is named by (IntegrityError otherwise), whatever the remote sent.

**Untrusted names.** Ref names come from keys that ``keys.check_key`` accepted (no ``..``, no
``:``/``*``/``^``/space, never a leading ``-`` since every ref starts with ``refs/``); the remote is
a configured remote's plain name (``gitcmd.check_remote``). Refs fetched from the remote that are
no valid key or digest are ignored.

Without its remote (a fresh ``mlops init`` before ``git remote add origin``): when mlops.yaml does
not name the remote (``fallback``: it is the default ``origin``) the refs stay in the clone, marked
``refs/mlops/local-only``, and the first command that finds the remote publishes them before any
fetch (``gitlocal``); a remote mlops.yaml names is refused with advice when missing.
``MLOPS_GIT_STORE_LOCAL=1`` keeps the refs in the clone only (nothing fetched, pushed or published).
``MLOPS_GIT_STORE_PUSH=0`` is for a job with a read-only token (a pull request's): everything is
read from the remote as usual, and what the command writes stays in the process, on top of that
view, and is never pushed (a pipeline run reuses origin's step cache and leaves origin as it was).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mlops.errors import IntegrityError, StoreError
from mlops.store import gitlocal
from mlops.store.digest import CHUNK, is_digest, iter_chunks
from mlops.store.gitcmd import Git, check_remote, message, rejection, text
from mlops.store.gitlocal import BLOBS as BLOBS
from mlops.store.gitlocal import RECORDS as RECORDS
from mlops.store.keys import check_digest, check_key, is_key

MiB = 1024 * 1024
MAX_RECORD_BYTES = 4 * MiB
EAGER_RECORD_BYTES = 64 * MiB  # records loaded with one fetch at most; larger ones beyond it are read when asked
DEFAULT_MAX_BLOB_BYTES = 50 * MiB
HARD_MAX_BLOB_BYTES = 100 * MiB  # GitHub refuses a push holding a file over 100 MB
REFRESH_SECONDS = 10.0
WRITE_DELAY_SECONDS = 0.5  # what the CLI uses: a burst of writes (a pipeline's cache entries) is one push
LOCAL_ENV = "MLOPS_GIT_STORE_LOCAL"
PUSH_ENV = "MLOPS_GIT_STORE_PUSH"
_ATTEMPTS = 8
# What git says when another process updated the same ref (or packed-refs) at the same moment: worth a retry.
_RACED = re.compile(r"cannot lock ref|failed to lock|unable to lock|Unable to create '[^']*\.lock'|"
                    r"failed to update ref|incorrect old value", re.IGNORECASE)
_S3_ADVICE = "keep large artifacts in S3 (stores.artifacts: {type: s3, bucket: ...})"


class _Mirror:
    """What this process knows of one clone's ``refs/mlops/``: shared by every GitStore on that clone
    and remote, so a command that opens the store twice still fetches once and pushes every blob."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.fetched_at = float("-inf")
        self.records: dict[str, tuple[str, int]] | None = None  # key -> (object id, size)
        self.contents: dict[str, bytes] = {}  # object id -> bytes (immutable, so never stale)
        self.blobs: dict[str, str] | None = None  # digest -> object id, of the blob refs in the clone
        self.remote_blobs: set[str] | None = None  # digests of the blob refs on the remote, at our last look
        self.listed_at = float("-inf")
        self.pending: dict[str, str | None] = {}  # refs written here, not pushed (yet): ref -> object id
        # (None: deleted here, only ever with a read-only remote, where nothing is pushed)
        self.timer: threading.Timer | None = None  # the deferred push of record writes, when one is due


_MIRRORS: dict[tuple[str, str, bool, bool], _Mirror] = {}
_MIRRORS_LOCK = threading.Lock()
_FLUSHERS: dict[tuple[str, str, bool, bool], GitStore] = {}  # one store per mirror, to push its pending blobs


def blob_ref(digest: str) -> str:
    """The ref of the blob with ``digest``."""
    return f"{BLOBS}{check_digest(digest)[:2]}/{digest}"


def record_ref(key: str) -> str:
    """The ref of the record ``key``."""
    return RECORDS + check_key(key)


class GitStore:
    """An ArtifactStore in git refs pushed to ``remote``. Safe across threads, processes and machines."""

    def __init__(self, repo_root: Path, remote: str = "origin", refresh_seconds: float = REFRESH_SECONDS,
                 max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES, local_only: bool | None = None,
                 write_delay: float = 0.0, push: bool | None = None, fallback: bool = False):
        self.repo_root = Path(repo_root).absolute()
        self.remote = check_remote(remote)
        self.refresh_seconds = refresh_seconds
        if not 0 < max_blob_bytes <= HARD_MAX_BLOB_BYTES:
            raise StoreError(f"the git store's blob limit must be between 1 byte and {HARD_MAX_BLOB_BYTES // MiB} "
                             f"MiB (GitHub refuses larger files); {_S3_ADVICE}")
        self.max_blob_bytes = max_blob_bytes
        self.local_only = os.environ.get(LOCAL_ENV) == "1" if local_only is None else local_only
        self.write_delay = 0.0 if self.local_only else write_delay
        self.push = os.environ.get(PUSH_ENV) != "0" if push is None else push
        self.fallback = fallback  # the remote is the default, not configured: none yet means local-only
        self._kept = False  # local-only because the remote is missing, in a read-only job: writes stay in memory
        self.git = Git(self.repo_root)
        where = "this clone only" if self.local_only else f"remote {remote!r}" if self.push else \
            f"remote {remote!r}, read-only: nothing is pushed"
        self.url = f"git refs/mlops/ ({where}) of {self.repo_root}"
        self._checked = False
        key = (str(self.repo_root), remote, self.local_only, self.push)
        with _MIRRORS_LOCK:
            self._m = _MIRRORS.setdefault(key, _Mirror())
            _FLUSHERS.setdefault(key, self)

    def __repr__(self) -> str:
        return f"GitStore({str(self.repo_root)!r}, remote={self.remote!r})"

    # -- blobs -------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store bytes as a git blob; it reaches the remote with the next push. Returns the sha256."""
        self._check_size(len(data), "the data")
        digest = hashlib.sha256(data).hexdigest()
        self._adopt(digest, self.git.hash_stream(iter((data,))))
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file (streamed, never whole in memory) as a git blob. Returns its sha256."""
        try:
            self._check_size(Path(path).stat().st_size, str(path))
            h = hashlib.sha256()
            with open(path, "rb") as f:
                oid = self.git.hash_stream(self._counted(iter_chunks(f), h, str(path)))
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
        digest = h.hexdigest()
        self._adopt(digest, oid)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        chunks: list[bytes] = []
        self._read_blob(digest, chunks.append)
        return b"".join(chunks)

    def get_file(self, digest: str, dest: Path) -> None:
        """Write the blob to ``dest`` atomically, verified against its digest."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            with open(tmp, "wb") as f:
                self._read_blob(digest, f.write)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- records -----------------------------------------------------------------------
    def read_record(self, key: str) -> bytes | None:
        check_key(key)
        with self._m.lock:
            entry = self._records().get(key)
            if entry is None:
                return None
            data = self._m.contents.get(entry[0])
        if data is None and entry[1] > MAX_RECORD_BYTES:
            raise StoreError(f"record {key!r} in {self.url} is {entry[1]} bytes, over the git store's limit of "
                             f"{MAX_RECORD_BYTES} bytes for a record: it is none of ours")
        if data is None:  # beyond what is loaded at once: read now, not kept
            r = self.git.run("cat-file", "blob", entry[0], check=False)
            data = r.stdout if r.returncode == 0 and len(r.stdout) == entry[1] else None
        if data is None:  # its object vanished between the listing and the read (a concurrent prune)
            self._m.fetched_at = float("-inf")
            raise StoreError(f"record {key!r} in {self.url} could not be read; run the command again")
        return data

    def list_records(self, prefix: str) -> Iterator[str]:
        with self._m.lock:
            keys = sorted(k for k in self._records() if k.startswith(prefix))
        return iter(keys)

    def create_record(self, key: str, data: bytes) -> bool:
        """Push a new ref; the remote refuses when it exists. True if we created it."""
        return self._write(key, data, create=True)

    def write_record(self, key: str, data: bytes) -> None:
        self._write(key, data, create=False)

    def delete_record(self, key: str) -> None:
        ref = record_ref(key)
        with self._m.lock:
            self._m.pending.pop(ref, None)  # a deferred write of it is void
            self._push({ref: None}, create=None)
            if self._m.records is not None:
                self._m.records.pop(key, None)

    # -- remote ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Mirror the remote's records into the clone (deletions too) and load them all."""
        with self._m.lock:
            self._check_remote()
            if not self.local_only:
                if self._m.pending and self.push:  # our deferred writes first, or the prune would hide them
                    self._push({}, create=None)
                self._fetch(f"+{RECORDS}*:{RECORDS}*", prune=True)
            self._load_records()
            self._m.fetched_at = time.monotonic()

    def flush(self) -> None:
        """Push what was stored or written since the last push (blobs, deferred record writes)."""
        with self._m.lock:
            if self._m.pending and self.push:
                self._push({}, create=None)
            if self._m.timer is not None and not self._m.pending:
                self._m.timer.cancel()
                self._m.timer = None

    # -- internals: records ------------------------------------------------------------
    def _records(self) -> dict[str, tuple[str, int]]:
        m = self._m
        if m.records is None or time.monotonic() - m.fetched_at > self.refresh_seconds:
            self.refresh()
        assert m.records is not None
        return m.records

    def _load_records(self) -> None:
        r = self.git.run("for-each-ref", "--format=%(objectname) %(objecttype) %(objectsize) %(refname)", RECORDS)
        records: dict[str, tuple[str, int]] = {}
        for line in text(r.stdout).splitlines():
            oid, kind, size, ref = (line.split(" ", 3) + ["", "", ""])[:4]
            key = ref[len(RECORDS):]
            if kind == "blob" and ref.startswith(RECORDS) and is_key(key) and size.isdigit():
                records[key] = (oid, int(size))
        # Loaded at once up to EAGER_RECORD_BYTES in all (small ones first); the rest is read when asked for, so
        # an origin holding many large records cannot fill this process's memory.
        budget = EAGER_RECORD_BYTES - sum(len(v) for v in self._m.contents.values())
        wanted = []
        for nbytes, oid in sorted({(n, o) for o, n in records.values()
                                   if n <= MAX_RECORD_BYTES and o not in self._m.contents}):
            if nbytes > budget:
                break
            budget -= nbytes
            wanted.append(oid)
        if wanted:
            out = self.git.run("cat-file", "--batch", input="".join(f"{o}\n" for o in wanted).encode()).stdout
            self._m.contents.update(_parse_batch(out))
        for ref, mine in self._m.pending.items():  # what this process wrote and did not push (yet)
            if ref.startswith(RECORDS):
                if mine is None:
                    records.pop(ref[len(RECORDS):], None)
                else:
                    records[ref[len(RECORDS):]] = (mine, len(self._m.contents.get(mine, b"")))
        self._m.records = records

    def _write(self, key: str, data: bytes, *, create: bool) -> bool:
        ref = record_ref(key)
        if len(data) > MAX_RECORD_BYTES:
            raise StoreError(f"record {key!r} is {len(data)} bytes, over the git store's limit of {MAX_RECORD_BYTES} "
                             f"bytes for a record; {_S3_ADVICE}")
        self._check_remote()
        oid = self.git.hash_stream(iter((data,)))
        with self._m.lock:
            if create and self._m.pending.get(ref) is not None:
                return False  # our own deferred write made it
            if not create and self.write_delay > 0:
                self._m.pending[ref] = oid  # pushed within write_delay, with whatever else came meanwhile
                self._schedule()
            elif not self._push({ref: oid}, create=create):
                self._m.fetched_at = float("-inf")  # someone else wrote it: our view is stale
                return False
            self._m.contents[oid] = bytes(data)
            if self._m.records is not None:
                self._m.records[key] = (oid, len(data))
        return True

    def _schedule(self) -> None:
        m = self._m
        if m.timer is None:
            m.timer = threading.Timer(self.write_delay, self._deferred_push)
            m.timer.daemon = True
            m.timer.start()

    def _deferred_push(self) -> None:
        with self._m.lock:
            self._m.timer = None
            # A failure keeps the writes pending: the next push, or flush() at the end of the command
            # (which the CLI turns into its exit code), tries again and reports it.
            with contextlib.suppress(StoreError):
                self.flush()

    # -- internals: blobs --------------------------------------------------------------
    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_blob_bytes:
            raise StoreError(f"{what} is {_size(size)}, over the git store's limit of {_size(self.max_blob_bytes)} "
                             f"for a blob (stores.artifacts.max_blob_mb); {_S3_ADVICE}")

    def _counted(self, chunks: Iterable[bytes], h: hashlib._Hash, what: str) -> Iterator[bytes]:
        seen = 0
        for chunk in chunks:
            seen += len(chunk)
            self._check_size(seen, what)  # it grew while we read it
            h.update(chunk)
            yield chunk

    def _adopt(self, digest: str, oid: str) -> None:
        ref = blob_ref(digest)
        self._check_remote()
        with self._m.lock:
            if self._local_blobs().get(digest) != oid:  # absent, or a ref to other content: (re)write it
                self._m.pending[ref] = oid
                if self.local_only:
                    self.flush()

    def _local_blobs(self) -> dict[str, str]:
        m = self._m
        if m.blobs is None:
            r = self.git.run("for-each-ref", "--format=%(objectname) %(refname)", BLOBS)
            m.blobs = {}
            for line in text(r.stdout).splitlines():
                oid, _, ref = line.partition(" ")
                digest = ref.rpartition("/")[2]
                if ref == f"{BLOBS}{digest[:2]}/{digest}" and len(digest) == 64 and digest == digest.lower():
                    m.blobs[digest] = oid
        return m.blobs

    def has_blob(self, digest: str) -> bool:
        """In the clone, waiting to be pushed, or on the remote (listed, not fetched)."""
        ref = blob_ref(digest)
        self._check_remote()
        with self._m.lock:
            if ref in self._m.pending or digest in self._local_blobs():
                return True
            return not self.local_only and digest in self._remote_blobs()

    def _remote_blobs(self) -> set[str]:
        """The digests of the remote's blob refs: one ``git ls-remote`` per ``refresh_seconds``, so a
        command that checks many blobs asks the remote once (names only, no content)."""
        m = self._m
        # Never older than the records we read: a record names only blobs pushed before it.
        if m.remote_blobs is None or m.listed_at < m.fetched_at \
                or time.monotonic() - m.listed_at > self.refresh_seconds:
            self._check_remote()
            r = self.git.run("ls-remote", "--refs", self.remote, f"{BLOBS}*", check=False)
            if r.returncode != 0:
                raise StoreError(f"cannot fetch the list of blobs from the remote {self.remote!r} "
                                 f"({self.git.remote_url(self.remote) or '?'}) into {self.repo_root}: "
                                 f"{message(r.stderr)}")
            m.remote_blobs = set()
            for line in text(r.stdout).splitlines():
                ref = line.partition("\t")[2]
                digest = ref.rpartition("/")[2]
                if is_digest(digest) and ref == f"{BLOBS}{digest[:2]}/{digest}":
                    m.remote_blobs.add(digest)
            m.listed_at = time.monotonic()
        return m.remote_blobs

    def _oid(self, digest: str) -> str | None:
        """The object id of the blob, fetching its ref from the remote when the clone lacks it."""
        ref = blob_ref(digest)
        self._check_remote()
        with self._m.lock:
            oid = self._m.pending.get(ref) or self._local_blobs().get(digest)
            if oid is not None or self.local_only:
                return oid
            # asked for by name: someone says it exists, so ask the remote (no listing)
            if not self._fetch(f"+{ref}:{ref}", prune=False, missing_ok=True):
                return None
            r = self.git.run("rev-parse", "--verify", "--quiet", f"{ref}^{{blob}}", check=False)
            oid = text(r.stdout).strip() or None
            if oid is not None:
                self._local_blobs()[digest] = oid
            return oid

    def _read_blob(self, digest: str, sink: Callable[[bytes], object]) -> None:
        oid = self._oid(check_digest(digest))
        if oid is None:
            raise StoreError(f"blob {digest} is not in {self.url}")
        proc = self.git.popen("cat-file", "blob", oid)
        assert proc.stdout is not None and proc.stderr is not None
        h, seen = hashlib.sha256(), 0
        try:
            while chunk := proc.stdout.read(CHUNK):
                seen += len(chunk)
                if seen > HARD_MAX_BLOB_BYTES:
                    raise StoreError(f"blob {digest} in {self.url} is larger than any the git store writes "
                                     f"({HARD_MAX_BLOB_BYTES // MiB} MiB): it is none of ours")
                h.update(chunk)
                sink(chunk)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        err = proc.stderr.read()
        proc.wait()
        if proc.returncode != 0:
            raise StoreError(f"cannot read blob {digest} from {self.url}: {message(err)}")
        if h.hexdigest() != digest:
            raise IntegrityError(f"blob {digest} in {self.url} is corrupt: its content hashes to {h.hexdigest()}; "
                                 "storing the same content again (re-register or re-run what produced it) repairs it")

    # -- internals: talking to the remote -----------------------------------------------
    def _check_remote(self) -> None:
        """Once per store: the repository, its remote, and the local-only state to publish first."""
        if self._checked:
            return
        with self._m.lock:
            marked = gitlocal.marked(self.git)
            if marked is None:
                raise StoreError(f"the git store (stores.artifacts.type: git) keeps its state in a git repository, "
                                 f"and {self.repo_root} is none")
            url = None if self.local_only else self.git.remote_url(self.remote)
            if self.local_only:
                pass  # asked for (MLOPS_GIT_STORE_LOCAL=1): nothing is fetched, pushed or published
            elif url is None and self.fallback:
                self._go_local()
            elif url is None:
                raise StoreError(f"the git store keeps records and blobs under refs/mlops/ on the remote "
                                 f"{self.remote!r}, and {self.repo_root} has no remote {self.remote!r}: add it (git "
                                 f"remote add {self.remote} URL), or set {LOCAL_ENV}=1 to keep them in this clone only")
            elif marked and not self.push:  # publishing needs a write token; a fetch now would prune that state
                raise StoreError(f"{self.repo_root} holds mlops state kept while it had no remote {self.remote!r} "
                                 f"({gitlocal.MARKER}); publish it first: run an mlops command without {PUSH_ENV}=0")
            elif marked:  # before any fetch: its --prune would delete records the remote never had
                gitlocal.publish(self.git, self.remote, url)
            self._checked = True

    def _go_local(self) -> None:
        """No remote yet, and none configured: the state stays in the clone until there is one."""
        self.local_only = True
        self.write_delay = 0.0
        self._kept = not self.push  # a read-only job leaves nothing behind to publish
        self.url = f"git refs/mlops/ (this clone only, until it has a remote {self.remote!r}) of {self.repo_root}"
        gitlocal.go_local(self.git, self.remote, mark=self.push)

    def _fetch(self, refspec: str, *, prune: bool, missing_ok: bool = False) -> bool:
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
                *(["--prune"] if prune else []), self.remote, refspec]
        for attempt in range(_ATTEMPTS):
            r = self.git.run(*args, check=False)
            if r.returncode == 0:
                return True
            err = text(r.stderr)
            if missing_ok and "couldn't find remote ref" in err:
                return False
            if not _RACED.search(err) or attempt == _ATTEMPTS - 1:  # only another fetch into this clone is worth a retry
                url = self.git.remote_url(self.remote) or "?"
                raise StoreError(f"cannot fetch {refspec.lstrip('+').partition(':')[0]} from the remote "
                                 f"{self.remote!r} ({url}) into {self.repo_root}: {message(r.stderr)}")
            _backoff(attempt)
        return False  # pragma: no cover - the loop returns or raises

    def _push(self, updates: dict[str, str | None], *, create: bool | None) -> bool:
        """Push ``updates`` (ref -> object id, None deletes) with everything pending, atomically.

        ``create=True`` pushes the one update only if its ref does not exist on the remote (False
        when it does). Called with the mirror's lock held."""
        self._check_remote()
        if not self.push and (not self.local_only or self._kept):
            return self._keep(updates, create=bool(create))
        m = self._m
        for attempt in range(_ATTEMPTS):
            carried = {ref: oid for ref, oid in m.pending.items() if oid is not None}
            if self.local_only:
                ok = self._update_local(updates, carried, create=bool(create))
                if not ok and create:
                    return False
                if not ok:
                    raise StoreError(f"cannot update refs/mlops/ in {self.repo_root}")
                return True
            args = ["push", "--atomic", "--porcelain", "--no-verify"]
            specs: list[str] = []
            for ref, oid in updates.items():
                if create:
                    args.append(f"--force-with-lease={ref}:")
                specs.append(f":{ref}" if oid is None else f"{oid}:{ref}" if create else f"+{oid}:{ref}")
            specs += [f"+{oid}:{ref}" for ref, oid in sorted(carried.items())]
            r = self.git.run(*args, self.remote, *specs, check=False)
            out = text(r.stdout) + text(r.stderr)
            if r.returncode == 0:
                self._pushed(updates, carried)
                # "=" (up to date): the ref was there already, with this very content: not created by us.
                return not (create and any(f"=\t{oid}:{ref}\t" in out
                                           for ref, oid in updates.items()))
            if create and any(f"{ref}\t[rejected] (stale info)" in out for ref in updates):
                return False
            if not _RACED.search(out) or attempt == _ATTEMPTS - 1:  # a concurrent update of the same ref: retry
                url = self.git.remote_url(self.remote) or "?"
                raise StoreError(f"cannot push to the remote {self.remote!r} ({url}) from {self.repo_root}: "
                                 f"{rejection(r.stdout) or message(r.stderr)}")
            _backoff(attempt)
        return False  # pragma: no cover

    def _keep(self, updates: dict[str, str | None], *, create: bool) -> bool:
        """Read-only remote: record the updates in this process only, over what was fetched."""
        view = self._records()
        for ref, oid in updates.items():
            if create and ref[len(RECORDS):] in view:
                return False
            self._m.pending[ref] = oid  # None: deleted here
        return True

    def _pushed(self, updates: dict[str, str | None], blobs: dict[str, str]) -> None:
        """Mirror a successful push in the clone's refs (the remote is the truth: a refusal here only
        means the next read fetches again)."""
        m = self._m
        for ref, oid in blobs.items():
            if m.pending.get(ref) == oid:
                del m.pending[ref]
            if ref.startswith(BLOBS):
                self._local_blobs()[ref.rpartition("/")[2]] = oid
        if not self.git.update_refs({**updates, **blobs}):
            m.fetched_at = float("-inf")

    def _update_local(self, updates: dict[str, str | None], blobs: dict[str, str], *, create: bool) -> bool:
        lines = [f"create {ref} {oid}\n" if create and oid else f"update {ref} {oid}\n" if oid else f"delete {ref}\n"
                 for ref, oid in updates.items()]
        lines += [f"update {ref} {oid}\n" for ref, oid in blobs.items()]
        if self.git.run("update-ref", "--stdin", input="".join(lines).encode(), check=False).returncode != 0:
            return False
        for ref, oid in blobs.items():
            self._m.pending.pop(ref, None)
            if ref.startswith(BLOBS):
                self._local_blobs()[ref.rpartition("/")[2]] = oid
        return True


def _parse_batch(out: bytes) -> dict[str, bytes]:
    """The objects of a ``git cat-file --batch`` answer, by object id."""
    found: dict[str, bytes] = {}
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        header = text(out[pos:end]).split()
        pos = end + 1
        if len(header) != 3:  # "<oid> missing": pruned meanwhile, the next fetch tells
            continue
        size = int(header[2])
        found[header[0]] = out[pos:pos + size]
        pos += size + 1
    return found


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0.02, 0.06) * (attempt + 1))


def flush_all() -> None:
    """Push what every open GitStore still holds (the CLI calls this after each command) and forget
    what was fetched, so the next command in this process fetches afresh."""
    with _MIRRORS_LOCK:
        stores = list(_FLUSHERS.values())
    for store in stores:
        store.flush()
    with _MIRRORS_LOCK:
        for m in _MIRRORS.values():
            with m.lock:
                m.fetched_at = m.listed_at = float("-inf")


def _after_fork_in_child() -> None:
    # A lock another thread held at the fork would stay held forever in the child; and what the
    # parent fetched may be stale for the child: start over, keeping the parent's pending blobs.
    for m in _MIRRORS.values():
        m.lock = threading.RLock()
        m.fetched_at = float("-inf")
        m.timer = None  # the parent's timer thread does not exist here


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    try:
        flush_all()
    except StoreError as e:  # too late for an exit code: say it
        print(f"warning: state not pushed to the remote: {e}", file=sys.stderr)
