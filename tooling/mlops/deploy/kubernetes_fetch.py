"""The init container of a Kubernetes deployment: fetch model files from the S3 artifact store by sha256.

``python -m mlops.deploy.kubernetes_fetch --bucket B [--prefix P] [--endpoint-url U] --dest DIR DIGEST...`` writes
each blob to ``DIR/DIGEST.onnx`` through ``S3Store.get_file``, which verifies the digest (a damaged or substituted
object fails the pod's start, and Kubernetes retries it). Credentials come from the environment as boto3 reads
them (the target's ``s3_secret`` Secret, or the pod's IAM role). Exit 0 when every file is in place, 1 otherwise,
with one line on stderr saying which file and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlops.errors import MlopsError
from mlops.store.digest import is_digest


def main(argv: list[str] | None = None) -> int:
    """Fetch and verify every digest named on the command line; the exit status says whether all arrived."""
    parser = argparse.ArgumentParser(prog="mlops.deploy.kubernetes_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--endpoint-url", default="")
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("digests", nargs="+")
    args = parser.parse_args(argv)
    bad = [d for d in args.digests if not is_digest(d)]
    if bad:
        print(f"mlops fetch: not a sha256 digest: {bad[0]!r}", file=sys.stderr)
        return 1
    from mlops.store.s3 import S3Store

    try:
        store = S3Store(args.bucket, args.prefix, args.endpoint_url)
        args.dest.mkdir(parents=True, exist_ok=True)
        for digest in args.digests:
            dest = args.dest / f"{digest}.onnx"
            if dest.exists():  # the pod restarted: the emptyDir kept it, and get_file verified it then
                continue
            store.get_file(digest, dest)
            print(f"mlops fetch: {digest} -> {dest} ({dest.stat().st_size} bytes, sha256 verified)", file=sys.stderr)
    except (MlopsError, OSError) as e:
        print(f"mlops fetch: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
