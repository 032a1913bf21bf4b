"""The git store before the repository has its remote: state kept in the clone, published later.

A fresh ``mlops init`` has no ``origin`` yet. When mlops.yaml does not name the remote (so it is the
default ``origin``) and the clone has none, the git store keeps its refs in the clone and marks that
durably with ``refs/mlops/local-only`` (a ref to the empty blob). The first command that finds the
remote configured while the marker exists publishes the clone's ``refs/mlops/records/*`` and
``refs/mlops/blobs/*`` before anything else: one ``git push --atomic`` with
``--force-with-lease=<ref>:`` ("must not exist there") per ref, then the marker goes. Only then may
the store's ``git fetch --prune`` run, so a record that was never published is never pruned.

If the remote already holds mlops state that differs from the clone's, nothing is pushed or pruned
and the command fails saying which refs clash: mlops cannot merge two histories, so the person
chooses (keep the remote's by deleting the marker, or point the store at another remote). The push
names every ref on its command line, which bounds the local state it can publish at a few thousand
refs (the operating system's argument limit); a clone that made more must push them itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlops.errors import StoreError
from mlops.store.digest import is_digest
from mlops.store.gitcmd import Git, message, rejection, text
from mlops.store.keys import is_key

RECORDS = "refs/mlops/records/"
BLOBS = "refs/mlops/blobs/sha256/"
MARKER = "refs/mlops/local-only"
_NOTED: set[tuple[str, str]] = set()
_SHOWN = 3  # refs named in an error; the rest are counted


def marked(git: Git) -> bool | None:
    """Whether the clone holds unpublished local-only state (the marker); None if it is no repository.

    One git call that answers both, as the store asks this once per command."""
    r = git.run("for-each-ref", "--format=%(refname)", MARKER, check=False)
    if r.returncode != 0:
        return None
    return MARKER in text(r.stdout).split()


def go_local(git: Git, remote: str, *, mark: bool) -> None:
    """Enter local-only mode: mark it (unless ``mark`` is false: a read-only job keeps nothing) and say
    so once per process on stderr."""
    if mark:
        empty = git.hash_stream(iter(()))
        git.run("update-ref", MARKER, empty)
    key = (str(git.root), remote)
    if key not in _NOTED:
        _NOTED.add(key)
        print(f"note: {git.root} has no remote {remote!r}: mlops keeps its state in this clone under refs/mlops/ "
              f"until a remote {remote} exists (git remote add {remote} URL); then mlops publishes it there",
              file=sys.stderr)


def publish(git: Git, remote: str, url: str) -> None:
    """Push the clone's local-only state to ``remote`` (atomically, each ref only where it does not
    exist) and remove the marker; StoreError, with nothing pushed or pruned, when the remote's mlops
    state differs from the clone's."""
    for attempt in range(2):
        mine, theirs = _local_refs(git), _remote_refs(git, remote, url)
        differ = sorted(ref for ref, oid in mine.items() if ref in theirs and theirs[ref] != oid)
        todo = {ref: oid for ref, oid in mine.items() if theirs.get(ref) != oid}
        only_there = sorted(ref for ref in theirs if ref.startswith(RECORDS) and ref not in mine)
        if differ or (only_there and any(ref.startswith(RECORDS) for ref in todo)):
            raise StoreError(_clash(git.root, remote, url, differ, only_there))
        if not todo:  # published already (the marker's removal was interrupted), or nothing to publish
            break
        leases = [f"--force-with-lease={ref}:" for ref in sorted(todo)]
        r = git.run("push", "--atomic", "--porcelain", "--no-verify", *leases, remote,
                    *(f"{oid}:{ref}" for ref, oid in sorted(todo.items())), check=False)
        if r.returncode == 0:
            break
        if attempt == 0 and "[rejected] (stale info)" in text(r.stdout):
            continue  # another clone published meanwhile: look again, and say what clashes
        raise StoreError(f"cannot publish this clone's refs/mlops/ to the remote {remote!r} ({url}) from "
                         f"{git.root}: {rejection(r.stdout) or message(r.stderr)}; it stays here, and the next "
                         "command tries again")
    git.run("update-ref", "-d", MARKER)


def _local_refs(git: Git) -> dict[str, str]:
    r = git.run("for-each-ref", "--format=%(objectname) %(refname)", RECORDS, BLOBS)
    refs: dict[str, str] = {}
    for line in text(r.stdout).splitlines():
        oid, _, ref = line.partition(" ")
        if _ours(ref):
            refs[ref] = oid
    return refs


def _remote_refs(git: Git, remote: str, url: str) -> dict[str, str]:
    r = git.run("ls-remote", "--refs", remote, f"{RECORDS}*", f"{BLOBS}*", check=False)
    if r.returncode != 0:
        raise StoreError(f"cannot list refs/mlops/ on the remote {remote!r} ({url}) to publish the state this "
                         f"clone ({git.root}) kept while it had no remote: {message(r.stderr)}; it stays here, and "
                         "the next command tries again")
    refs: dict[str, str] = {}
    for line in text(r.stdout).splitlines():
        oid, _, ref = line.partition("\t")
        if _ours(ref):
            refs[ref] = oid
    return refs


def _ours(ref: str) -> bool:
    """A record or blob ref the store could have written (anything else is none of ours)."""
    if ref.startswith(RECORDS):
        return is_key(ref[len(RECORDS):])
    digest = ref.rpartition("/")[2]
    return is_digest(digest) and ref == f"{BLOBS}{digest[:2]}/{digest}"


def _clash(root: Path, remote: str, url: str, differ: list[str], only_there: list[str]) -> str:
    parts = []
    if differ:
        parts.append(f"{len(differ)} ref(s) hold other content there ({_names(differ)})")
    if only_there:
        parts.append(f"{len(only_there)} record(s) exist only there ({_names(only_there)})")
    return (f"{root} kept mlops state under refs/mlops/ while it had no remote {remote!r} ({MARKER}), and the "
            f"remote {remote!r} ({url}) already holds other mlops state: {'; '.join(parts)}. mlops cannot merge "
            "two histories, so it kept this clone's state and pushed and pruned nothing. Inspect both with "
            f"`git for-each-ref refs/mlops/` and `git ls-remote {remote} 'refs/mlops/*'`; to keep the remote's "
            f"state instead, run `git update-ref -d {MARKER}` (the next command replaces this clone's records); "
            "to keep this clone's, set stores.artifacts.remote in mlops.yaml to a remote without refs/mlops/")


def _names(refs: list[str]) -> str:
    shown = ", ".join(refs[:_SHOWN])
    return shown + (f", and {len(refs) - _SHOWN} more" if len(refs) > _SHOWN else "")

