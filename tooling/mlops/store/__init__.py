"""Content-addressed artifact stores (see ``protocol.ArtifactStore``).

``local.LocalStore`` (a directory, ``.mlops/`` by default), ``s3.S3Store`` (S3-compatible
object storage), ``git.GitStore`` (refs under ``refs/mlops/`` pushed to the repository's own
remote), ``memory.MemoryStore`` (the fake for tests); ``open.open_store`` picks one
from the project's config, and ``lock.StoreLock`` is a named lock on top of any of them.
"""
