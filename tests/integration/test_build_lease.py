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


class _LeaseWitness:
    """An event sink that notes, on the thread each event comes from, which lease of the
    store is open there (what that thread's writes join)."""

    def __init__(self, store, inner):
        self.store, self.inner = store, inner
        self.seen: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def emit(self, event) -> None:
        lease = self.store.current_lease()
        with self._lock:
            self.seen.append((threading.current_thread().name, lease.id if lease else None))
        self.inner.emit(event)


def test_parallel_stages_write_under_the_build_lease(build_env):  # noqa: F811
    """The stage threads run in a copy of the build's context: every step they commit
    joins the build's one lease, with no re-joining by hand."""
    witness = _LeaseWitness(build_env.store, build_env.events)
    build_env.ctx.events = witness
    dockerfile = DOCKERFILE.replace("sleep 0.3", "true")
    ctx_dir = build_env.context_dir(files={"Containerfile": dockerfile})
    res = build_env.build(ctx_dir, dockerfile, tags=["witnessed"], jobs=2)
    assert res.image_id
    on_stages = [lease for name, lease in witness.seen if name.startswith("kiln-stage")]
    assert on_stages, "no event came from a stage thread: the stages did not run in parallel"
    leases = {lease for _, lease in witness.seen if lease is not None}
    assert len(leases) == 1 and None not in on_stages
    assert build_env.store.current_lease() is None  # released with the build
