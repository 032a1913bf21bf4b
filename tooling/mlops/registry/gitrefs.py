"""Registry records kept in git itself (``stores.registry.backend: git``), so they outlive an
ephemeral CI runner: the record half of ``mlops.store.git.GitStore``.

One implementation serves both uses: ``stores.artifacts.type: git`` keeps records *and* blobs in
``refs/mlops/`` on origin; the registry backend keeps only the records there (blobs stay in the
artifact store, wrapped together by ``composite.CompositeStore``). Both use the same refs
(``refs/mlops/records/<key>``), the same batched fetch and the same atomic pushes.
"""

from __future__ import annotations

from mlops.store.git import RECORDS, GitStore

NAMESPACE = RECORDS
GitRefRecords = GitStore

__all__ = ["NAMESPACE", "GitRefRecords"]
