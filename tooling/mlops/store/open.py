"""Open the artifact store a project's ``store:`` section describes."""

from __future__ import annotations

import os
from pathlib import Path

from mlops.errors import PathError, StoreError
from mlops.spec.model import StoreConfig
from mlops.store.protocol import ArtifactStore

# The operator's way to keep a local store elsewhere (a bigger disk, a CI cache): absolute, or
# relative to the repository root. A spec can only name a directory inside the repository.
STORE_PATH_ENV = "MLOPS_STORE_PATH"


def open_store(config: StoreConfig, repo_root: Path) -> ArtifactStore:
    """A LocalStore (``path`` relative to ``repo_root``, default ``.mlops``), an S3Store, or a GitStore
    (records and blobs as refs under ``refs/mlops/`` pushed to the repository's ``remote``).

    The local store's directory is ``$MLOPS_STORE_PATH`` when set, else ``path`` resolved
    inside the repository (``StoreError`` when it, or a symbolic link on the way, leads out).
    S3 credentials are not part of the config: boto3 reads them from the environment
    (``AWS_ACCESS_KEY_ID``..., a profile, or an instance role) as usual.
    """
    if config.type == "local":
        from mlops.store.local import LocalStore

        return LocalStore(local_store_dir(config, Path(repo_root)))
    if config.type == "s3":
        from mlops.store.s3 import S3Store

        return S3Store(config.bucket, config.prefix, config.endpoint_url, config.region)
    if config.type == "git":
        from mlops.store.git import WRITE_DELAY_SECONDS, GitStore

        # A remote mlops.yaml names must exist; the default one may come later (see store.gitlocal).
        return GitStore(Path(repo_root), config.remote or "origin", fallback=not config.remote,
                        max_blob_bytes=int(config.max_blob_mb * 1024 * 1024), write_delay=WRITE_DELAY_SECONDS)
    raise StoreError(f"unknown store type {config.type!r} in the project's store section (use local, s3 or git)")


def local_store_dir(config: StoreConfig, repo_root: Path) -> Path:
    """Where the local store lives (see ``open_store``)."""
    override = os.environ.get(STORE_PATH_ENV)
    if override:
        return repo_root / os.path.expanduser(override)
    from mlops import paths

    try:
        where = paths.resolve_inside(repo_root, config.path or ".mlops", names=(".git",))
        if where == repo_root:
            raise PathError(f"path {config.path!r} is the repository root")
        return where
    except PathError as e:
        raise StoreError(f"the artifact store (stores.artifacts.path in mlops.yaml): {e}; a spec may only "
                         f"name a store inside the repository (set {STORE_PATH_ENV} to keep it elsewhere)") from None
