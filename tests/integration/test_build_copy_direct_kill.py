"""Crash safety of a COPY written straight from the context (kiln.build.copy_direct): a
``kiln build`` SIGKILLed while it lists, tars, compresses or publishes the layer leaves no
image, blob or row that reads back wrong, and the next build finishes with the right bytes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from build_fixtures import ROOT_MARKS
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.archive.compression import open_decompressed
from kiln.image import open_store_image, validate_image
from kiln.store import Store
from kiln.store.check import check_content

pytestmark = [*ROOT_MARKS, pytest.mark.slow, pytest.mark.timeout(600)]


def _build(root: str, ctx: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kiln.cli.main", "--root", root, "build", "-q", "-t",
            "killed", ctx]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def test_direct_copy_killed_anywhere_leaves_nothing_wrong(kiln_store, busybox_image, tmp_path):  # noqa: F811
    root = kiln_store.root
    ctx = tmp_path / "ctx"
    (ctx / "files").mkdir(parents=True)
    big = os.urandom(48 << 20)
    (ctx / "files" / "big").write_bytes(big)
    for i in range(2000):
        (ctx / "files" / f"f{i}").write_text(f"{i}\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY files /files\n")
    kiln_store.close()
    for delay in (0.3, 0.6, 0.9, 1.2, 1.6, 2.0, 2.5):
        proc = _build(root, str(ctx))
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        with Store.open(root) as store:
            found = check_content(store)
            assert not found.blobs and not found.images and not found.database, found
            named = [i for i in store.list_images() if "localhost/killed:latest" in i.names]
            for image in named:  # a build that finished before the kill: whole
                validate_image(store, image.manifest_digest)
    proc = _build(root, str(ctx))
    assert proc.wait(timeout=300) == 0
    with Store.open(root) as store:
        image = store.resolve_image("killed")
        validate_image(store, image.manifest_digest)
        img = open_store_image(store, image.id)
        with (
            img.open_layer(img.layers[-1]) as raw,
            open_decompressed(raw) as plain,
            tarfile.open(fileobj=plain, mode="r|") as tar,
        ):
            for member in tar:
                if member.name == "files/big":
                    data = tar.extractfile(member).read()
                    assert hashlib.sha256(data).digest() == hashlib.sha256(big).digest()
                    break
            else:
                pytest.fail("files/big is not in the layer")
