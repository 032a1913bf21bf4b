"""Files a spec names are read inside the repository only: model files, metrics, datasets, lockfiles,
and the store itself. A link that leads out of the repository is refused, and nothing it points at
reaches the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops.environments.identity import canonical_spec, repo_reader
from mlops.errors import RegistryError, SpecError, StoreError
from mlops.registry.datasets import register_dataset
from mlops.registry.models import register_model
from mlops.spec.model import Environment, StoreConfig
from mlops.store.local import LocalStore
from mlops.store.open import STORE_PATH_ENV, open_store
from tests.sentinel import make_sentinel, secret_digest


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return make_sentinel(tmp_path / "outside")


@pytest.fixture
def root(tmp_path: Path, sentinel: Path) -> Path:
    root = tmp_path / "repo"
    (root / "models" / "files").mkdir(parents=True)
    (root / "models" / "files" / "model.bin").write_bytes(b"weights")
    os.symlink(sentinel, root / "etclink")
    os.symlink("/proc/self/environ", root / "envlink")
    return root


def blobs(store: LocalStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file()] if (store.root / "blobs").exists() else []


@pytest.mark.parametrize("files", [["etclink/shadow"], ["envlink"], ["etclink"], ["models/files", "etclink/sub"],
                                   [".git/config"]])
def test_model_files_through_a_link_out_are_refused_and_nothing_is_stored(root: Path, files: list[str]) -> None:
    store = LocalStore(root.parent / "store")
    with pytest.raises(RegistryError, match=r"leads outside the repository|is inside \.git/"):
        register_model(store, "leak", [root / f for f in files], flavor="custom", root=root)
    assert blobs(store) == []


def test_a_link_out_inside_a_model_directory_is_refused(root: Path, sentinel: Path) -> None:
    os.symlink(sentinel / "shadow", root / "models" / "files" / "shadow")
    store = LocalStore(root.parent / "store")
    with pytest.raises(RegistryError, match="path 'models/files/shadow' leads outside the repository"):
        register_model(store, "leak", [root / "models" / "files"], flavor="custom", root=root)
    assert not store.has_blob(secret_digest()) and blobs(store) == []


def test_links_inside_the_repository_are_registered_by_content(root: Path) -> None:
    os.symlink("model.bin", root / "models" / "files" / "alias.bin")
    store = LocalStore(root.parent / "store")
    mv = register_model(store, "ok", [root / "models" / "files"], flavor="custom", root=root)
    assert sorted(f.path for f in mv.files) == ["alias.bin", "model.bin"]
    assert len({f.digest for f in mv.files}) == 1


def test_a_dataset_linked_out_of_the_repository_is_not_copied(root: Path) -> None:
    store = LocalStore(root.parent / "store")
    for rel in ("etclink", "etclink/shadow"):
        with pytest.raises(RegistryError, match=f"dataset 'big': path '{rel}' leads outside the repository"):
            register_dataset(store, "big", root / rel, root=root)
    assert blobs(store) == []


def test_an_operator_may_still_register_files_from_anywhere(root: Path, sentinel: Path) -> None:
    """`mlops models register FILE` names files on the operator's command line: not confined."""
    store = LocalStore(root.parent / "store")
    mv = register_model(store, "ops", [sentinel / "sub" / "keep.txt"], flavor="custom")
    assert [f.path for f in mv.files] == ["keep.txt"]


def test_a_lockfile_through_a_link_out_is_refused(root: Path) -> None:
    env = Environment(name="e", python="3.11", lockfile="etclink/shadow", file="environments/e.yaml")
    with pytest.raises(SpecError) as e:
        canonical_spec(env, repo_reader(root))
    assert "$.lockfile: cannot read lockfile 'etclink/shadow': path 'etclink/shadow' leads outside the repository" \
        in str(e.value.diagnostics[0])


def test_the_store_a_spec_names_stays_inside_unless_the_operator_says_otherwise(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_PATH_ENV, raising=False)
    for path in ("../..", "/var/tmp/elsewhere", "etclink/store", ".", ".git/store"):
        with pytest.raises(StoreError, match=f"set {STORE_PATH_ENV} to keep it elsewhere"):
            open_store(StoreConfig(path=path), root)
    store = open_store(StoreConfig(path=".mlops"), root)
    assert isinstance(store, LocalStore) and store.root == root / ".mlops"

    monkeypatch.setenv(STORE_PATH_ENV, str(tmp_path / "big-disk" / "store"))
    store = open_store(StoreConfig(path="../.."), root)
    assert isinstance(store, LocalStore) and store.root == tmp_path / "big-disk" / "store"


def test_register_executors_refuse_links_planted_after_validation(root: Path, sentinel: Path) -> None:
    """Validation saw plain files; by the time apply reads them they lead out: refused, nothing stored."""
    from mlops.apply.executors.registry import register_dataset as register_dataset_action
    from mlops.apply.executors.registry import register_model as register_model_action
    from mlops.apply.protocol import ApplyContext
    from mlops.plan.model import Action
    from mlops.spec.loader import load_specs

    (root / "mlops.yaml").write_text("kind: Project\nname: small\nstages: [{name: dev}]\n")
    (root / "models" / "m.yaml").write_text("kind: Model\nname: m\nflavor: custom\n"
                                            "source: {files: [models/files/model.bin], metrics: models/m.json}\n")
    (root / "models" / "m.json").write_text('{"accuracy": 0.9}')
    (root / "datasets").mkdir()
    (root / "datasets" / "d.yaml").write_text("kind: Dataset\nname: d\npath: data\n")
    (root / "data").mkdir()
    (root / "data" / "raw.csv").write_text("a\n1\n")
    os.unlink(root / "envlink")
    specs = load_specs(root)
    store = LocalStore(root.parent / "store")
    ctx = ApplyContext(root=root, specs=specs, store=store, lineage={"git_commit": None})

    os.unlink(root / "models" / "m.json")
    os.symlink(sentinel / "shadow", root / "models" / "m.json")
    with pytest.raises(RegistryError, match="path 'models/m.json' leads outside the repository"):
        register_model_action(Action("register_model:model/m", "register_model", "model/m", "created", "new"), ctx)
    (root / "models" / "m.json").unlink()
    (root / "models" / "m.json").write_text('{"accuracy": 0.9}')
    os.unlink(root / "models" / "files" / "model.bin")
    os.symlink(sentinel / "shadow", root / "models" / "files" / "model.bin")
    with pytest.raises(RegistryError, match="path 'models/files/model.bin' leads outside the repository"):
        register_model_action(Action("register_model:model/m", "register_model", "model/m", "created", "new"), ctx)

    os.symlink(sentinel / "shadow", root / "data" / "leak.csv")
    refused = register_dataset_action(Action("register_dataset:dataset/d", "register_dataset", "dataset/d",
                                             "created", "new"), ctx)
    assert refused.status == "failed" and "path 'data/leak.csv' leads outside the repository" in refused.message
    assert blobs(store) == []


@pytest.mark.parametrize("paths, message", [
    (["a", "a/b"], "also as a file ('a')"),
    (["x", "x"], "names it twice"),
    ([".git/config"], "inside a .git folder"),
    (["sub/.GIT/hooks/post-checkout"], "inside a .git folder"),
    (["."], "damaged"),
    (["a\0b"], "damaged"),
])
def test_a_forged_version_record_cannot_make_download_write_oddly(tmp_path: Path, root: Path, paths: list[str],
                                                                   message: str) -> None:
    """A version record names the files `models download` writes: a name inside another file's,
    one inside ``.git`` (downloading into a checkout would plant git config or hooks), ``.`` or a NUL
    is refused before anything is written, never an internal error."""
    import json
    import re

    from mlops.errors import MlopsError
    from mlops.registry.models import download_model

    store = LocalStore(tmp_path / "store")
    mv = register_model(store, "m", [root / "models/files/model.bin"], flavor="custom")
    record = store.root / "records/registry/models/m/versions/0000000001.json"
    data = json.loads(record.read_text())
    data["files"] = [{**data["files"][0], "path": p} for p in paths]
    record.write_text(json.dumps(data))
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(MlopsError, match=re.escape(message)):
        download_model(store, "m", mv.version, dest)
    assert list(dest.iterdir()) == []
