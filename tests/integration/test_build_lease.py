"""A build holds a lease: `kiln image prune` running beside it never deletes the
step images the next step builds on (each is dangling until the next step builds
on it), in parallel stages too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox AS a
RUN echo a > /a && sleep 0.3
RUN echo a2 >> /a && sleep 0.3
FROM busybox AS b
RUN echo b > /b && sleep 0.3
RUN echo b2 >> /b && sleep 0.3
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
RUN cat /a /b > /ab
"""


def test_prune_beside_a_build_deletes_nothing_it_needs(build_env, tmp_path):  # noqa: F811
    ctx_dir = build_env.context_dir(files={"Containerfile": DOCKERFILE})
    env = dict(os.environ, KILN_ROOT=build_env.store.root)
    stop = threading.Event()
    prunes = []

    def prune_loop():
        while not stop.is_set():
            prunes.append(
                subprocess.run(
                    [sys.executable, "-m", "kiln.cli.main", "image", "prune", "-f"],
                    env=env,
                    capture_output=True,
                    text=True,
                )  # fmt: skip
            )

    pruner = threading.Thread(target=prune_loop)
    pruner.start()
    try:
        res = build_env.build(ctx_dir, DOCKERFILE, tags=["leased"], jobs=2)
    finally:
        stop.set()
        pruner.join()
    assert res.image_id
    assert prunes, "the prune loop never ran"
    files = build_env.files("leased")
    assert files["ab"] == b"a\na2\nb\nb2\n"
