"""OverlayStore: reads fall through to the store below, every write stays in the overlay."""

from __future__ import annotations

from pathlib import Path

from mlops.store.local import LocalStore
from mlops.store.overlay import OverlayStore
from mlops.store.protocol import ArtifactStore


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_reads_fall_through_and_writes_never_reach_below(tmp_path: Path) -> None:
    below = LocalStore(tmp_path / "below")
    old_blob = below.put_bytes(b"cached step output")
    below.write_record("runs/p/1", b"run 1")
    below.write_record("registry/m/1", b"v1")
    before = _snapshot(tmp_path / "below")

    over = OverlayStore(below, tmp_path / "scratch")
    assert isinstance(over, ArtifactStore)
    assert over.has_blob(old_blob) and over.get_bytes(old_blob) == b"cached step output"
    new_blob = over.put_bytes(b"candidate model")
    assert over.has_blob(new_blob) and not below.has_blob(new_blob)
    over.get_file(old_blob, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == b"cached step output"

    assert over.create_record("registry/m/1", b"other") is False  # taken below: version numbers stay unique
    assert over.create_record("registry/m/2", b"v2") is True
    over.write_record("runs/p/1", b"run 1, rewritten")
    assert over.read_record("runs/p/1") == b"run 1, rewritten"
    assert list(over.list_records("registry/m/")) == ["registry/m/1", "registry/m/2"]
    over.delete_record("registry/m/1")
    assert over.read_record("registry/m/1") is None
    assert list(over.list_records("registry/m/")) == ["registry/m/2"]
    assert over.create_record("registry/m/1", b"again") is True and over.read_record("registry/m/1") == b"again"

    assert _snapshot(tmp_path / "below") == before  # nothing reached the shared store
