"""What the working tree holds, as git sees it: the commit it sits on, whether it is dirty, and the
git tree id of its content.

Dirty means: a file that reconcile uses (a spec, a step's code or anything it imports, a lockfile,
a model file or input kept in the repository) differs from HEAD or is untracked. Changes to files
nothing uses (a README, notes) are neither refused nor recorded.

A plan pins the tree it was made for, and apply refuses a working tree whose tree id differs: the
tree id covers every file git would commit (specs, step code and the modules it imports, lockfiles,
model files in the repository), so a code-only change made after planning is caught, not run
unreviewed. Files a reconcile produces or versions by content itself (pipeline outputs, dataset
paths, the store under ``.mlops``) are left out, as are ignored files.

A dirty tree is applied only when asked (``--allow-dirty``); what was applied is then kept as a
*snapshot commit* (the dirty tree, with HEAD as its parent, held by ``refs/mlops-local/applied``),
so the next reconcile compares against exactly what ran: an unchanged dirty tree is a no-op, and
reverting the uncommitted edit is a change again. The ref is local on purpose (the registry's
``refs/mlops/*`` namespace is pushed to origin; an uncommitted experiment must not be).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops.errors import RevisionError

SNAPSHOT_REF = "refs/mlops-local/applied"
SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_LISTED = 5


@dataclass(frozen=True)
class WorktreeState:
    """``commit``: HEAD (None before the first commit or outside git); ``tree``: the git tree id of the
    content (None outside git); ``dirty``: paths that differ from HEAD (modified, added, deleted, untracked)."""

    commit: str | None
    tree: str | None
    dirty: tuple[str, ...] = ()

    @property
    def is_dirty(self) -> bool:
        return bool(self.dirty)

    def describe_dirty(self) -> str:
        shown = ", ".join(self.dirty[:_MAX_LISTED])
        more = len(self.dirty) - _MAX_LISTED
        return shown + (f" and {more} more" if more > 0 else "")


def is_sha(text: object) -> bool:
    """Whether ``text`` is a full hexadecimal git object id (sha1 or sha256)."""
    return isinstance(text, str) and SHA_RE.fullmatch(text) is not None


def read_worktree(root: Path, owned: Iterable[str] = (), relevant: Callable[[str], bool] | None = None,
                  pinned: Iterable[str] = ()) -> WorktreeState:
    """The state of the working tree at ``root``; ``owned`` paths (outputs, datasets) are left out, and
    with ``relevant``, so are uncommitted changes to files nothing uses (a README, a scratch file).

    ``pinned`` are the files (or folders) reconcile uses: specs, step code and the modules it imports,
    lockfiles, model files. One that git ignores is still used, so it counts as uncommitted (an
    ignored spec was applied while the state recorded the clean commit, which lacks it)."""
    if not _is_git(root):
        return WorktreeState(None, None)
    excludes = _excludes(owned)
    head = _git(root, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False).strip() or None
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", ":/", *excludes)
    found = {p for p in _status_paths(status) if relevant is None or relevant(p)}
    found |= _ignored(root, pinned, excludes)
    dirty = tuple(sorted(found))
    if not dirty and head is not None:
        return WorktreeState(head, _git(root, "rev-parse", f"{head}^{{tree}}").strip())
    return WorktreeState(head, _write_tree(root, dirty), dirty)


def snapshot_commit(root: Path, state: WorktreeState) -> str:
    """A commit holding the (dirty) tree of ``state`` with HEAD as parent, kept alive by ``SNAPSHOT_REF``.

    For a clean tree this is simply HEAD."""
    if not state.is_dirty and state.commit is not None:
        return state.commit
    if state.tree is None:
        raise RevisionError(f"{root} is not a git repository: a dirty working tree cannot be recorded")
    parents = ["-p", state.commit] if state.commit else []
    env = {**os.environ, "GIT_AUTHOR_NAME": "mlops", "GIT_AUTHOR_EMAIL": "mlops@localhost",
           "GIT_COMMITTER_NAME": "mlops", "GIT_COMMITTER_EMAIL": "mlops@localhost"}
    message = f"mlops: working tree applied with uncommitted changes ({state.describe_dirty()})"
    sha = _git(root, "commit-tree", state.tree, *parents, "-m", message, env=env).strip()
    _git(root, "update-ref", "-m", "mlops apply --allow-dirty", SNAPSHOT_REF, sha)
    return sha


def tree_of(root: Path, rev: str) -> str | None:
    """The tree id of a commit (None for "empty" or outside git)."""
    if rev in ("empty", "worktree"):
        return None
    return _git(root, "rev-parse", "--verify", "-q", f"{rev}^{{tree}}", check=False).strip() or None


def commit_exists(root: Path, rev: str) -> bool:
    """Whether ``rev`` names a commit that this clone has."""
    return bool(_git(root, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip())


def merge_base(root: Path, a: str, b: str) -> str:
    """The best common ancestor of two revisions (what a pull request's own changes start from)."""
    for rev in (a, b):
        if not rev or rev.startswith("-"):  # it would be one of git merge-base's options
            raise RevisionError(f"{rev!r} is not a revision")
    out = _git(root, "merge-base", a, b, check=False).strip()
    if not out:
        raise RevisionError(f"{a} and {b} have no common ancestor in {root} (is the clone shallow? "
                            "fetch with `fetch-depth: 0` or `git fetch --unshallow`)")
    return out


def changed_between_trees(root: Path, a: str, b: str) -> list[str]:
    """Paths that differ between two tree ids (empty when either is unknown to this repository)."""
    out = _git(root, "diff-tree", "-r", "-z", "--name-only", "--no-renames", a, b, check=False)
    return [p for p in out.split("\0") if p]


# -- git plumbing ---------------------------------------------------------------------------------

def _is_git(root: Path) -> bool:
    return bool(_git(root, "rev-parse", "--git-dir", check=False).strip())


def _excludes(owned: Iterable[str]) -> list[str]:
    paths = {".mlops", *(os.path.normpath(p) for p in owned if p)}
    return [f":(top,exclude){_glob_escape(p)}" for p in sorted(paths)]


def _glob_escape(path: str) -> str:
    # Pathspecs are globs by default; a literal path must not match other files through * ? [.
    return re.sub(r"([*?\[\]\\])", r"\\\1", path)


def _ignored(root: Path, pinned: Iterable[str], excludes: list[str]) -> set[str]:
    """The files among (or below) ``pinned`` that exist, are untracked and git ignores."""
    specs = sorted({f":(top,literal){p.rstrip('/')}" for p in pinned if p and p.rstrip("/")})
    if not specs:
        return set()
    out = _git(root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", *specs, *excludes,
               check=False)
    return {p for p in out.split("\0") if p}


def _status_paths(status: str) -> Iterable[str]:
    entries = status.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            i += 1  # the next entry is the source of the rename or copy
        yield path


def _write_tree(root: Path, dirty: Sequence[str]) -> str:
    """The tree id of HEAD plus the ``dirty`` paths as they are now, built in a scratch copy of the index
    (git's own index is untouched)."""
    index = Path(root, _git(root, "rev-parse", "--git-path", "index").strip())
    with tempfile.TemporaryDirectory(prefix="mlops-index-") as tmp:
        scratch = Path(tmp) / "index"
        if index.is_file():
            shutil.copyfile(index, scratch)  # its stat data lets `git add` skip unchanged files
        env = {**os.environ, "GIT_INDEX_FILE": str(scratch), "GIT_LITERAL_PATHSPECS": "1"}
        if dirty:
            paths = Path(tmp) / "paths"
            paths.write_bytes(b"\0".join(p.encode() for p in dirty))
            # -f: an ignored file that reconcile uses is part of what is applied (see ``_ignored``).
            _git(root, "add", "-A", "-f", f"--pathspec-from-file={paths}", "--pathspec-file-nul", env=env)
        return _git(root, "write-tree", env=env).strip()


def _git(root: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL)
    except OSError as e:
        raise RevisionError(f"cannot run git in {root}: {e}") from e
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RevisionError(f"`git {' '.join(args[:2])}` failed in {root}: {detail}")
    return proc.stdout
