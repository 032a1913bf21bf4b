"""Turning local files into FileEntries (uploading them as blobs) and back.

Files a spec names are read with a ``root`` (the repository): they are confined to it by the
rules of ``mlops.paths`` (no link out of it, never ``.git`` or ``.mlops``), and each is uploaded
from the very file that was checked. Files an operator names on the command line are read as given.
"""

from __future__ import annotations

from pathlib import Path

from mlops import paths as pathrules
from mlops.errors import PathError, RegistryError
from mlops.registry.records import FileEntry
from mlops.store.protocol import ArtifactStore


def expand(paths: list[Path], root: Path | None = None) -> list[tuple[str, Path]]:
    """(name inside the asset, local path) for each file; a directory contributes every file
    under it, named relative to it. RegistryError for missing paths or clashing names.

    With ``root``, each path (relative to it, or absolute below it) is confined to ``root``.
    """
    out: dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        if root is not None:
            items = _inside(Path(root), p)
        elif p.is_dir():
            items = [(f.relative_to(p).as_posix(), f) for f in sorted(p.rglob("*")) if f.is_file()]
            if not items:
                raise RegistryError(f"{p}: directory has no files")
        elif p.is_file():
            items = [(p.name, p)]
        else:
            raise RegistryError(f"{p}: no such file or directory")
        for name, f in items:
            if name in out:
                raise RegistryError(f"{f}: two files would be named {name!r} (the other is {out[name]})")
            out[name] = f
    if not out:
        raise RegistryError("no files given")
    return sorted(out.items())


def _inside(root: Path, p: Path) -> list[tuple[str, Path]]:
    rel = _relative(root, p)
    try:
        real = pathrules.resolve_inside(root, rel)
        if real.is_dir():
            items = [(name, root / at) for name, at in pathrules.files_below(root, rel)]
            if not items:
                raise RegistryError(f"{rel}: directory has no files")
            return items
    except PathError as e:
        raise RegistryError(str(e)) from None
    if not real.is_file():
        raise RegistryError(f"{rel}: no such file")
    return [(Path(rel).name, root / rel)]


def _relative(root: Path, p: Path) -> str:
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        raise RegistryError(f"{p} is outside the repository {root}") from None


def upload(store: ArtifactStore, items: list[tuple[str, Path]], root: Path | None = None) -> tuple[FileEntry, ...]:
    """Store each file as a blob. Done before any record is written, so a crash leaves at
    most unreferenced blobs, never a record that points at a missing one.

    With ``root``, each file is opened confined to it and the store reads that very file
    (a file swapped for a link after ``expand`` checked it is refused, not followed)."""
    if root is None:
        return tuple(FileEntry(name, store.put_file(path), path.stat().st_size) for name, path in items)
    entries = []
    for name, path in items:
        try:
            with pathrules.opened_file(Path(root), _relative(Path(root), path)) as (opened, size):
                entries.append(FileEntry(name, store.put_file(opened), size))
        except PathError as e:
            raise RegistryError(str(e)) from None
    return tuple(entries)


def download(store: ArtifactStore, files: tuple[FileEntry, ...], dest_dir: Path) -> list[Path]:
    """Write each file under ``dest_dir`` (verified against its digest by the store)."""
    dest_dir = Path(dest_dir)
    root = dest_dir.resolve()
    names = {entry.path for entry in files}
    for entry in files:  # records are untrusted: check them all before writing anything
        parts = entry.path.split("/")
        if any(part.lower() == ".git" for part in parts):
            raise RegistryError(f"refusing to write {entry.path!r}: a file inside a .git folder")
        inside = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in names), None)
        if inside is not None or len(names) != len(files):
            raise RegistryError(f"refusing to write {entry.path!r}: the record names it twice, or also as a "
                                f"file ({inside!r}) it would have to lie inside")
        if not (dest_dir / entry.path).resolve().is_relative_to(root):
            raise RegistryError(f"refusing to write {entry.path!r} outside {dest_dir}")
    out = []
    for entry in files:
        target = dest_dir / entry.path
        try:
            store.get_file(entry.digest, target)
        except OSError as e:
            raise RegistryError(f"cannot write {target}: {e.strerror or e}") from None
        out.append(target)
    return out
