"""Registry records kept in git itself, so they outlive an ephemeral CI runner.

Each record is a git blob referenced by ``refs/mlops/<key>`` and pushed to a remote (the
repository's origin). ``create_record`` pushes with ``--force-with-lease=<ref>:`` (an empty
expectation: "the ref must not exist"); the remote checks that inside its ref transaction,
so of two concurrent creators exactly one succeeds, on any machine. Blobs (model files) do
not belong in git: wrap this in a CompositeStore with a real ArtifactStore for them.

Reads use local copies of the refs, refreshed from the remote (``git fetch --prune``) by
every ``list_records`` and by reads when the last refresh is older than ``refresh_seconds``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from mlops.errors import StoreError
from mlops.store.keys import check_key, is_key

NAMESPACE = "refs/mlops/"


class GitRefRecords:
    """The record half of an ArtifactStore, backed by refs pushed to a git remote."""

    def __init__(self, repo_root: Path, remote: str = "origin", refresh_seconds: float = 1.0):
        self.repo_root = Path(repo_root)
        self.remote = remote
        self.refresh_seconds = refresh_seconds
        self._refreshed_at = float("-inf")
        self.url = f"git {NAMESPACE}* of remote {remote!r} of {self.repo_root}"

    def __repr__(self) -> str:
        return f"GitRefRecords({str(self.repo_root)!r}, remote={self.remote!r})"

    # -- records -----------------------------------------------------------------------
    def read_record(self, key: str) -> bytes | None:
        ref = self._ref(key)
        if time.monotonic() - self._refreshed_at > self.refresh_seconds:
            self.refresh()
        r = self._git("cat-file", "blob", ref, check=False)
        if r.returncode != 0:
            return None
        return r.stdout

    def create_record(self, key: str, data: bytes) -> bool:
        """Push a new ref; the remote refuses if it exists. True if we created it."""
        ref = self._ref(key)
        sha = self._hash_object(data)
        for attempt in range(5):
            r = self._git("push", "--porcelain", "--no-verify", f"--force-with-lease={ref}:", self.remote,
                          f"{sha}:{ref}", check=False)
            if _pushed(r.stdout):
                self._git("update-ref", ref, sha)
                return True
            # Rejected: fine if because the ref exists (then learn its value); else a real failure.
            if self._remote_sha(ref, check=False) is not None:
                self._refreshed_at = float("-inf")  # our view was stale
                return False
            if b"[rejected]" not in r.stdout:
                break
            # It existed when we pushed and was deleted since (a lock released meanwhile): try again.
            time.sleep(0.02 * (attempt + 1))
        raise StoreError(f"cannot push {ref} to {self.remote!r} from {self.repo_root}: "
                         f"{_message(r.stderr) or _message(r.stdout)}")

    def write_record(self, key: str, data: bytes) -> None:
        ref = self._ref(key)
        sha = self._hash_object(data)
        self._git("push", "--porcelain", "--no-verify", "--force", self.remote, f"{sha}:{ref}")
        self._git("update-ref", ref, sha)

    def delete_record(self, key: str) -> None:
        ref = self._ref(key)
        if self._remote_sha(ref) is not None:
            self._git("push", "--porcelain", "--no-verify", self.remote, f":{ref}")
        self._git("update-ref", "-d", ref, check=False)

    def list_records(self, prefix: str) -> Iterator[str]:
        self.refresh()
        r = self._git("for-each-ref", "--format=%(refname)", NAMESPACE)
        keys = [line[len(NAMESPACE):] for line in _text(r.stdout).splitlines() if line.startswith(NAMESPACE)]
        return iter(sorted(k for k in keys if k.startswith(prefix) and is_key(k)))

    def refresh(self) -> None:
        """Mirror the remote's ``refs/mlops/*`` into the local repository (deletions included)."""
        last = None
        for attempt in range(5):
            r = self._git("fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", self.remote,
                          f"+{NAMESPACE}*:{NAMESPACE}*", check=False)
            if r.returncode == 0:
                self._refreshed_at = time.monotonic()
                return
            last = r
            # Another process updating the same local refs holds a ref lock for a moment.
            time.sleep(0.05 * (attempt + 1))
        assert last is not None
        raise StoreError(f"cannot fetch {NAMESPACE}* from {self.remote!r} in {self.repo_root}: "
                         f"{_message(last.stderr)}")

    # -- internals ---------------------------------------------------------------------
    def _ref(self, key: str) -> str:
        return NAMESPACE + check_key(key)

    def _hash_object(self, data: bytes) -> str:
        return _text(self._git("hash-object", "-w", "--stdin", input=data).stdout).strip()

    def _remote_sha(self, ref: str, check: bool = True) -> str | None:
        r = self._git("ls-remote", "--refs", self.remote, ref, check=check)
        for line in _text(r.stdout).splitlines():
            sha, _, name = line.partition("\t")
            if name == ref:
                return sha
        return None

    def _git(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        try:
            r = subprocess.run(["git", "-C", str(self.repo_root), *args], input=input, capture_output=True,
                               timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StoreError(f"git {args[0]} in {self.repo_root} failed: {e}") from e
        if check and r.returncode != 0:
            raise StoreError(f"git {' '.join(args[:2])} in {self.repo_root} failed: {_message(r.stderr)}")
        return r


def _pushed(porcelain: bytes) -> bool:
    # Porcelain lines are "<flag>\t<from>:<to>\t<summary>"; "*" is a new ref, " " / "+" an update.
    return any(line[:1] in ("*", " ", "+") and "\t" in line for line in _text(porcelain).splitlines())


def _message(stderr: bytes) -> str:
    """git's first error line, without the hints."""
    lines = [ln.strip() for ln in _text(stderr).splitlines() if ln.strip() and not ln.startswith("hint:")]
    errors = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (errors or lines or ["(no message)"])[0]


def _text(b: bytes) -> str:
    return b.decode(errors="replace")
