"""A Ctrl-C at any point of a store call, or of an image's way into the store, leaves the
store whole.

Each call is run once per point of kiln code where a real Ctrl-C can land, with a real
SIGINT sent there (``ctrl_c_anywhere``). After each trial, whether the call finished or
raised ``KeyboardInterrupt``: ``kiln system check`` finds nothing, no lease is left (the
calls' own end with them), no ingest is left in ``ingest/``, the snapshotter's ``tmp/``
is empty once its background deletions are done (no staged layer of an import or a load),
its rows and directories agree, nothing is mounted (``store_leftovers.store_left_behind``),
no descriptor the trial opened is left open (a library process lives on after a Ctrl-C),
and the call works again (the next trial runs it). An import or a load passes thousands of
points, most of them reading the input: their trials are the points of the image layer's
code and of the operation's own, where what they write is made and handed on; the store's
calls they make have their own cases here.

A Ctrl-C while a layer's staging (an unpack's, an import's, a load's) waits for the
snapshotter's root lock, which a gc of another process can hold exclusive for long, stops
the call then, not once the lock comes, and leaves the store whole.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Callable, Iterator

import pytest

import kiln
from ctrl_c_anywhere import KILN, assert_whole_at_every_point
from kiln.oci import Descriptor, Digest
from kiln.util.locks import file_lock
from snapshot_layers import layer_tar, unpack
from store_leftovers import set_store_right, store_left_behind, trial_context
from waits import wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

NAME = "localhost/base:1"
BLOB = b"blob\n" * 20_000
# where an import's and a load's trials are: the image layer, the operations that write
# into the store, and the staged trees they hand on
WRITES = tuple(
    KILN + p for p in ("image/", "ops/archives.py", "ops/store_copy.py", "snapshot/staged.py")
)


def _rootfs(path: str) -> str:
    raw, _ = layer_tar({"etc": None, "etc/os": b"base\n", "bin": None, "bin/x": b"x" * 5000})
    with open(path, "wb") as f:
        f.write(raw)
    return path


class Case:
    """A store with a small root filesystem tarball and a docker-archive of its image."""

    def __init__(self, ctx: kiln.Context, tmp: str):
        self.ctx = ctx
        self.store = ctx.store
        self.snaps = ctx.snapshots
        self.tarball = _rootfs(os.path.join(tmp, "rootfs.tar"))
        self.archive = os.path.join(tmp, "base.tar")
        kiln.import_image(ctx, self.tarball, NAME)
        kiln.save_images(ctx, [NAME], self.archive)
        self.reset()

    def image(self) -> str:
        return kiln.import_image(self.ctx, self.tarball, NAME).id

    def reset(self) -> None:
        """Back to an empty store, through the store's and the snapshotter's own calls."""
        for rec in self.store.list_images():
            self.store.delete_image(rec.id)
        self.store.gc()
        for row in reversed(self.snaps.layer_rows()):
            self.snaps.remove_layer(row.chain_id)
        self.snaps.settle()


@pytest.fixture
def case(tmp_path, monkeypatch) -> Iterator[Case]:
    with trial_context(str(tmp_path), monkeypatch) as ctx:
        yield Case(ctx, str(tmp_path))


def _put_blob(c: Case) -> None:
    c.store.put_blob(Descriptor("application/octet-stream", Digest.of_bytes(BLOB), len(BLOB)),
                     io.BytesIO(BLOB))  # fmt: skip


def _put_blob_leased(c: Case) -> None:
    with c.store.lease():
        _put_blob(c)


def _lease_image(c: Case) -> None:
    with c.store.lease() as lease:
        lease.add_image(c.store.resolve_image(NAME).id)


def _garbage(c: Case) -> None:
    c.store.delete_image(c.image())  # its blobs, its unpacked layer


# name -> (set-up, call, where its trials are): the call is what the trials interrupt
CALLS: dict[str, tuple[Callable[[Case], object], Callable[[Case], object], tuple[str, ...]]] = {
    "put-blob": (lambda c: None, _put_blob, (KILN,)),
    "put-blob-leased": (lambda c: None, _put_blob_leased, (KILN,)),
    "lease-image": (Case.image, _lease_image, (KILN,)),
    "tag": (Case.image, lambda c: kiln.tag_image(c.ctx, NAME, "localhost/other:2"), (KILN,)),
    "untag": (Case.image, lambda c: kiln.untag_image(c.ctx, NAME, NAME), (KILN,)),
    "rmi": (Case.image, lambda c: kiln.remove_images(c.ctx, [NAME]), (KILN,)),
    "gc": (_garbage, lambda c: c.ctx.collect_garbage(), (KILN,)),
    "import": (lambda c: None, lambda c: kiln.import_image(c.ctx, c.tarball, NAME), WRITES),
    "load": (lambda c: None, lambda c: kiln.load_images(c.ctx, c.archive), WRITES),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_ctrl_c_at_any_point_leaves_the_store_whole(case: Case, name) -> None:
    set_up, call, within = CALLS[name]
    assert_whole_at_every_point(
        lambda: set_up(case),
        lambda: call(case),
        case.reset,
        lambda: store_left_behind(case.ctx),
        lambda: set_store_right(case.ctx),
        within,
        fds=True,
    )


HOLD_SECONDS = 30.0  # the gc's stand-in lets go by then even if the Ctrl-C never comes
STAGING: dict[str, Callable[[Case], object]] = {
    "unpack": lambda c: unpack(c.snaps, "sha256:c1", None, {"x": b"x"}),
    "import": CALLS["import"][1],
    "load": CALLS["load"][1],
}


def _waiting_for(path: str) -> bool:
    """Someone waits in ``flock`` for ``path`` (a ``->`` line of ``/proc/locks``)."""
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks", encoding="ascii", errors="replace") as f:
        return any(
            fields[1:3] == ["->", "FLOCK"] and fields[6] == ident
            for fields in (line.split() for line in f)
            if len(fields) > 6
        )


@pytest.mark.parametrize("name", list(STAGING))
def test_a_ctrl_c_while_staging_waits_for_the_root_lock_stops_the_call(case: Case, name):
    lock_path = os.path.join(case.snaps.root, "snapshots.lock")
    held, let_go, released = threading.Event(), threading.Event(), threading.Event()

    def hold_exclusive() -> None:  # as a gc does
        with file_lock(lock_path):
            held.set()
            let_go.wait(HOLD_SECONDS)
        released.set()

    main = threading.get_ident()

    def ctrl_c() -> None:
        wait_for("the call to wait for the root lock", _waiting_for, lock_path)
        signal.pthread_kill(main, signal.SIGINT)

    holder = threading.Thread(target=hold_exclusive)
    holder.start()
    held.wait()
    sender = threading.Thread(target=ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            STAGING[name](case)
        assert not released.is_set(), "the Ctrl-C waited for the root lock"
    finally:
        signal.signal(signal.SIGINT, previous)
        let_go.set()
        holder.join()
        sender.join()
    assert store_left_behind(case.ctx) == []
    STAGING[name](case)  # and it works once the lock is free
    assert store_left_behind(case.ctx) == []
