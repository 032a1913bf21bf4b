"""Turning local files into FileEntries (uploading them as blobs) and back."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import RegistryError
from mlops.registry.records import FileEntry
from mlops.store.protocol import ArtifactStore


def expand(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name inside the asset, local path) for each file; a directory contributes every file
    under it, named relative to it. RegistryError for missing paths or clashing names."""
    out: dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
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


def upload(store: ArtifactStore, items: list[tuple[str, Path]]) -> tuple[FileEntry, ...]:
    """Store each file as a blob. Done before any record is written, so a crash leaves at
    most unreferenced blobs, never a record that points at a missing one."""
    return tuple(FileEntry(name, store.put_file(path), path.stat().st_size) for name, path in items)


def download(store: ArtifactStore, files: tuple[FileEntry, ...], dest_dir: Path) -> list[Path]:
    """Write each file under ``dest_dir`` (verified against its digest by the store)."""
    dest_dir = Path(dest_dir)
    root = dest_dir.resolve()
    out = []
    for entry in files:
        target = dest_dir / entry.path
        if not target.resolve().is_relative_to(root):
            raise RegistryError(f"refusing to write {entry.path!r} outside {dest_dir}")
        store.get_file(entry.digest, target)
        out.append(target)
    return out
