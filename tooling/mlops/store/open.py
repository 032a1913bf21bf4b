"""Open the artifact store a project's ``store:`` section describes."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import StoreError
from mlops.spec.model import StoreConfig
from mlops.store.protocol import ArtifactStore


def open_store(config: StoreConfig, repo_root: Path) -> ArtifactStore:
    """A LocalStore (``path`` relative to ``repo_root``, default ``.mlops``) or an S3Store.

    S3 credentials are not part of the config: boto3 reads them from the environment
    (``AWS_ACCESS_KEY_ID``..., a profile, or an instance role) as usual.
    """
    if config.type == "local":
        from mlops.store.local import LocalStore

        return LocalStore(Path(repo_root) / (config.path or ".mlops"))
    if config.type == "s3":
        from mlops.store.s3 import S3Store

        return S3Store(config.bucket, config.prefix, config.endpoint_url, config.region)
    raise StoreError(f"unknown store type {config.type!r} in the project's store section (use local or s3)")
