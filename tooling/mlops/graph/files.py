"""Which repository files differ between two revisions (git is the source of truth)."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import RevisionError


def changed_files(root: Path, base: str, head: str | None) -> set[str]:
    """Paths that differ between ``base`` and ``head`` (None = the working tree, untracked files included).

    A rename counts as a change of both the old and the new path. ``base="empty"`` means every file of head.
    """
    import git

    try:
        repo = git.Repo(root)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as e:
        raise RevisionError(f"{root} is not a git repository") from e
    try:
        if base == "empty":
            if head is None:
                tracked = repo.git.ls_files("-z").split("\0")
                untracked = repo.git.ls_files("-z", "--others", "--exclude-standard").split("\0")
                return {p for p in tracked + untracked if p}
            return {p for p in repo.git.ls_tree("-r", "--name-only", "-z", head).split("\0") if p}
        args = ["--name-status", "-z", "-M", base] + ([head] if head else [])
        out = repo.git.diff(*args)
        untracked = repo.git.ls_files("-z", "--others", "--exclude-standard") if head is None else ""
    except git.exc.GitCommandError as e:
        raise RevisionError(f"git could not compare {base!r} and {head or 'the working tree'!r}: "
                            f"{e.stderr.strip() or e}") from e
    files: set[str] = set()
    fields = out.split("\0")
    i = 0
    while i < len(fields):
        status = fields[i]
        if not status:
            i += 1
            continue
        if status[0] in "RC":
            files.update(fields[i + 1:i + 3])
            i += 3
        else:
            files.add(fields[i + 1])
            i += 2
    files.update(p for p in untracked.split("\0") if p)
    return files
