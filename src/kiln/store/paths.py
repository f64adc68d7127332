"""Where the store lives on disk, and the names of the things inside it."""

from __future__ import annotations

import os

from kiln.oci import Digest
from kiln.util.rootless import is_rootless

DB_NAME = "kiln.db"
BLOBS = "blobs"
INGEST = "ingest"
SNAPSHOTS = "snapshots"
GC_LOCK = "gc.lock"


def default_root() -> str:
    """``$KILN_ROOT``; else ``/var/lib/kiln`` for root; else ``$XDG_DATA_HOME/kiln``."""
    env = os.environ.get("KILN_ROOT")
    if env:
        return os.path.abspath(env)
    if not is_rootless():  # a user's kiln is uid 0 in its own namespace: still the user's
        return "/var/lib/kiln"
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(os.path.abspath(data_home), "kiln")


def blob_path(root: str, digest: Digest) -> str:
    return os.path.join(root, BLOBS, digest.algorithm, digest.hex)


def remove_tree(path: str) -> None:
    """Remove the directory ``path`` of the store and what is under it, whatever is already
    gone (a cleanup: an ingest's, a cache mount's)."""
    import shutil  # start-up: only a cleanup needs it (with bz2 and lzma); kiln images none

    shutil.rmtree(path, ignore_errors=True)
