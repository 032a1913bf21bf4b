"""S3Store: the artifact store in an S3-compatible bucket (AWS S3, MinIO, moto, ...).

Layout under ``s3://BUCKET/PREFIX``: ``blobs/sha256/ab/<digest>`` and ``records/<key>``.
An S3 PUT is atomic (an object appears whole or not at all), so no temp keys are needed.
``create_record`` is a conditional PUT with ``If-None-Match: *``: S3 itself refuses to
overwrite an existing key, which makes it atomic across machines.
Credentials come from the environment exactly as boto3 finds them.

A put of content whose blob already exists checks that object first: its ETag is the MD5 of its
content for a single PUT (AWS, MinIO), compared with the MD5 of ours; when the ETag is not a plain
MD5 (multipart upload, KMS encryption) the object is read and hashed. A corrupt object is
replaced, so storing the same content again repairs it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from mlops.errors import IntegrityError, StoreError
from mlops.store.digest import CHUNK, sha256_bytes
from mlops.store.keys import check_digest, check_key, is_key

T = TypeVar("T")

# Above this a single PUT is not allowed by S3; the managed (multipart) upload takes over.
SINGLE_PUT_LIMIT = 5 * 1024**3


def _code(e: BotoCoreError | ClientError) -> str:
    if isinstance(e, ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


class S3Store:
    """A content-addressed store in an S3 bucket. Safe for concurrent use from many machines."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "", region: str = ""):
        import boto3

        if not bucket:
            raise StoreError("the s3 store needs a bucket (store.bucket in mlops.yaml)")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}"
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint_url={self.endpoint_url!r})"

    # -- blobs -------------------------------------------------------------------------
    def blob_key(self, digest: str) -> str:
        """The object key of the blob with ``digest``."""
        return f"{self.prefix}blobs/sha256/{check_digest(digest)[:2]}/{digest}"

    def put_file(self, path: Path) -> str:
        """Upload a file unless its blob already exists intact. S3 checks the sha256 we send with it."""
        try:
            digest, md5 = _sha256_md5(path)
            size = path.stat().st_size
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
        key = self.blob_key(digest)
        if self._is_sound(key, digest, md5):
            return digest
        if size <= SINGLE_PUT_LIMIT:
            with open(path, "rb") as body:
                self._call("upload", key, lambda: self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ChecksumSHA256=_b64(digest)))
        else:
            self._call("upload", key, lambda: self._client.upload_file(str(path), self.bucket, key))
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        key = self.blob_key(digest)
        if not self._is_sound(key, digest, hashlib.md5(data, usedforsecurity=False).hexdigest()):
            self._call("upload", key, lambda: self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=_b64(digest)))
        return digest

    def has_blob(self, digest: str) -> bool:
        return self._exists(self.blob_key(digest))

    def get_file(self, digest: str, dest: Path) -> None:
        """Stream the blob into a temp file beside ``dest``, verify, then rename into place."""
        key = self.blob_key(digest)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            body = self._get(key, what="blob")
            h = hashlib.sha256()
            with open(tmp, "wb") as f:
                for chunk in body.iter_chunks(CHUNK):
                    h.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            self._verify(digest, h.hexdigest(), key)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()

    def get_bytes(self, digest: str) -> bytes:
        key = self.blob_key(digest)
        data: bytes = self._get(key, what="blob").read()
        self._verify(digest, sha256_bytes(data), key)
        return data

    # -- records -----------------------------------------------------------------------
    def _record_key(self, key: str) -> str:
        return f"{self.prefix}records/{check_key(key)}"

    def read_record(self, key: str) -> bytes | None:
        k = self._record_key(key)
        try:
            data: bytes = self._client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
            return data
        except (BotoCoreError, ClientError) as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", k, e) from e

    def create_record(self, key: str, data: bytes) -> bool:
        """Conditional PUT: S3 answers 412 if the key exists. A 409 means a concurrent
        conditional write to the same key is in flight; S3 asks us to retry."""
        k = self._record_key(key)
        for attempt in range(8):
            try:
                self._client.put_object(Bucket=self.bucket, Key=k, Body=data, IfNoneMatch="*")
                return True
            except (BotoCoreError, ClientError) as e:
                code = _code(e)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code in ("ConditionalRequestConflict", "409") and attempt < 7:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._error("create", k, e) from e
        raise StoreError(f"could not create s3://{self.bucket}/{k}: conflicting writes kept racing")

    def write_record(self, key: str, data: bytes) -> None:
        k = self._record_key(key)
        self._call("write", k, lambda: self._client.put_object(Bucket=self.bucket, Key=k, Body=data))

    def delete_record(self, key: str) -> None:
        k = self._record_key(key)
        self._call("delete", k, lambda: self._client.delete_object(Bucket=self.bucket, Key=k))

    def list_records(self, prefix: str) -> Iterator[str]:
        base = f"{self.prefix}records/"
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys.extend(k for obj in page.get("Contents", []) if is_key(k := obj["Key"][len(base):]))
        except (BotoCoreError, ClientError) as e:
            raise self._error("list", base + prefix, e) from e
        return iter(sorted(keys))

    # -- internals ---------------------------------------------------------------------
    def _is_sound(self, key: str, digest: str, md5: str) -> bool:
        """Whether the blob object exists with exactly the content its key names."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("check", key, e) from e
        if str(head.get("ETag", "")).strip('"') == md5:
            return True
        h = hashlib.sha256()  # the ETag is no plain MD5 here, or the content differs: hash what is there
        for chunk in self._get(key, what="blob").iter_chunks(CHUNK):
            h.update(chunk)
        return h.hexdigest() == digest

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except (BotoCoreError, ClientError) as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("check", key, e) from e

    def _get(self, key: str, what: str) -> Any:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (BotoCoreError, ClientError) as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise StoreError(f"{what} s3://{self.bucket}/{key} does not exist") from e
            raise self._error("read", key, e) from e

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (BotoCoreError, ClientError) as e:
            raise self._error(op, key, e) from e

    def _error(self, op: str, key: str, e: BotoCoreError | ClientError) -> StoreError:
        where = f"s3://{self.bucket}/{key}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        detail = str(e)
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            detail = f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
        return StoreError(f"S3 {op} of {where} failed: {detail}")

    def _verify(self, digest: str, actual: str, key: str) -> None:
        if actual != digest:
            raise IntegrityError(f"blob {digest} at s3://{self.bucket}/{key} is corrupt: "
                                 f"its content hashes to {actual}; storing the same content again "
                                 "(re-register or re-run what produced it) repairs it")


def _sha256_md5(path: Path) -> tuple[str, str]:
    """The sha256 and MD5 (to compare with an ETag) of a file, in one read."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
