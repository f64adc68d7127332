"""A Ctrl-C at any point of a working-container call leaves the store whole.

Each library call of buildah's verbs (``from`` on a local image, unpacked or not yet,
``copy`` of a small file and of a directory, ``config``, ``commit`` plain and with ``rm``,
``rm``, ``mount``, ``umount``, ``rename``, ``run`` of ``true``, ``export``) is run once per
point of kiln's code where a real Ctrl-C can land, with a real SIGINT sent there
(``ctrl_c_anywhere``); the points are those of the working-container code, of the unpacking
of a ``from``'s image and of the writing of a commit's layer. The calls run on the overlay
snapshotter, the commit on the copy one too (it reads the image's tree). After each trial,
whether the call finished or raised ``KeyboardInterrupt``: ``kiln system check`` finds
nothing, no lease, ingest, staged file or export's temporary file is left, no descriptor
the trial opened is open (nor closed only by a garbage collection), the snapshotter's rows
and directories agree, nothing is mounted under the store but what a container records as
``kiln mount``'s (and that is mounted), and the container is either there and usable (its
commit and its rm work) or gone entirely: no container without its snapshot, no snapshot no
container names. Then the call works again (the next trial).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest

import kiln
from ctrl_c_anywhere import KILN, assert_whole_at_every_point
from kiln.container.state import ContainerState
from kiln.ops.containers import mount_container, rename_container, unmount_container
from kiln.snapshot.mount import is_mountpoint, overlay_works
from snapshot_layers import layer_tar
from store_leftovers import set_store_right, store_left_behind, trial_context

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

BASE = "localhost/base:1"
OUT = "localhost/out:1"
C = "work"
BUSYBOX = "/bin/busybox"
# where the trials are: the working containers' code and their use cases, and the
# writing of a commit's layer into the store
CONTAINERS = (KILN + "container/", KILN + "ops/containers.py")
# a run's: its own code and its rootfs's mount (each trial runs runc: ~0.1 s)
RUNS = tuple(KILN + "container/" + p for p in ("run.py", "copied_up.py", "builder.py"))
COMMITS = (*CONTAINERS, KILN + "image/store_image.py", KILN + "archive/tar_writer.py")


class Case:
    """A store with a small image, and a file to copy into a container of it."""

    def __init__(self, ctx: kiln.Context, tmp: str):
        self.ctx = ctx
        self.store = ctx.store
        self.snaps = ctx.snapshots
        raw, _ = layer_tar({"etc": None, "etc/os": b"base\n", "bin": None, "bin/x": b"x" * 5000})
        tarball = os.path.join(tmp, "rootfs.tar")
        with open(tarball, "wb") as f:
            f.write(raw)
        kiln.import_image(ctx, tarball, BASE)
        self.context = os.path.join(tmp, "context")
        os.mkdir(self.context)
        with open(os.path.join(self.context, "hello"), "w") as f:
            f.write("hello\n")
        os.makedirs(os.path.join(self.context, "tree", "sub"))
        for rel in ("tree/a", "tree/sub/b"):
            with open(os.path.join(self.context, rel), "w") as f:
                f.write(rel + "\n")
        self.exported = os.path.join(tmp, "exports", "out.tar")
        os.mkdir(os.path.dirname(self.exported))

    def container(self) -> None:
        kiln.create_container(self.ctx, BASE, name=C)

    def changed(self) -> None:
        """A container with a file of its own, for a commit to write a layer of."""
        self.container()
        kiln.copy_to_container(self.ctx, C, ["hello"], "/hello", context_dir=self.context)

    def runnable(self) -> None:
        """A container with a ``true`` to run (busybox's, which runs the applet it is named)."""
        if not os.path.exists(BUSYBOX):
            pytest.skip("busybox-static (/bin/busybox) is not installed")
        self.container()
        kiln.copy_to_container(self.ctx, C, [BUSYBOX], "/bin/true")

    def mounted(self) -> None:
        """A container ``kiln mount`` mounted, for an umount."""
        self.container()
        mount_container(self.ctx, C)

    def packed(self) -> None:
        """The base image's layers not unpacked yet, for a ``from`` to unpack them."""
        for row in reversed(self.snaps.layer_rows()):
            self.snaps.remove_layer(row.chain_id)
        self.snaps.settle()

    def reset(self) -> None:
        """Back to the base image alone, through kiln's own calls."""
        kiln.remove_containers(self.ctx, [], all=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.exported)
        for rec in self.store.list_images():
            if BASE not in rec.names:
                self.store.delete_image(rec.id)
        self.store.gc()
        self.snaps.settle()


@pytest.fixture
def case(request, tmp_path, monkeypatch) -> Iterator[Case]:
    if request.param == "overlay" and not overlay_works(str(tmp_path)):
        pytest.skip("overlayfs cannot be mounted here")
    monkeypatch.setenv("KILN_SNAPSHOT_DRIVER", request.param)  # the snapshotter's driver
    with trial_context(str(tmp_path), monkeypatch) as ctx:
        yield Case(ctx, str(tmp_path))


def _containers(c: Case) -> list[str]:
    """Each container there whole and usable (its commit and its rm work; it is gone
    after), and no snapshot without its container."""
    problems = []
    records = c.store.list_containers()
    active = set(c.snaps.list_active())
    named = {rec.snapshot_key for rec in records}
    problems += [f"active snapshot {key} no container names" for key in sorted(active - named)]
    for rec in records:
        if rec.snapshot_key not in active:
            problems.append(f"container {rec.name} has no snapshot {rec.snapshot_key}")
            continue
        try:
            kiln.commit_container(c.ctx, rec.id)
            kiln.remove_containers(c.ctx, [rec.id])
        except kiln.KilnError as exc:
            problems.append(f"container {rec.name} not usable: {exc}")
    return problems


def _recorded_mounts(c: Case) -> tuple[set[str], list[str]]:
    """The rootfs mount points containers record (``kiln mount``'s: the only mounts the
    store may hold), and a problem for each of them not mounted."""
    recorded = set()
    problems = []
    for rec in c.store.list_containers():
        point = ContainerState.from_json(rec.state).mount_point
        if point:
            recorded.add(point)
            if not is_mountpoint(point):
                problems.append(f"container {rec.name} records {point}, not mounted")
    return recorded, problems


def left_behind(c: Case) -> list[str]:
    """What is not whole in the store, its snapshotter and its containers."""
    recorded, problems = _recorded_mounts(c)
    problems = store_left_behind(c.ctx, mounted=recorded) + problems
    exports = os.path.dirname(c.exported)
    problems += [f"exports/{n}" for n in os.listdir(exports) if n != "out.tar"]
    return problems + _containers(c)


def _set_right(c: Case) -> None:
    """Remove what a failed trial left, so the next trial shows its own."""
    for rec in c.store.list_containers():
        c.store.delete_container(rec.id)
    for key in c.snaps.list_active():
        c.snaps.remove(key)
    set_store_right(c.ctx)


def _config(c: Case) -> None:
    settings = kiln.ConfigSettings(env=["A=1"], labels=["l=v"], cmd="/bin/x", add_history=True)
    kiln.configure_container(c.ctx, C, settings)


# name -> (set-up, call, where its trials are): the call is what the trials interrupt
CALLS: dict[str, tuple[Callable[[Case], object], Callable[[Case], object], tuple[str, ...]]] = {
    "from": (lambda c: None, Case.container, CONTAINERS),
    "from-unpacking": (Case.packed, Case.container, (*CONTAINERS, KILN + "image/unpack.py")),
    "copy": (
        Case.container,
        lambda c: kiln.copy_to_container(c.ctx, C, ["hello"], "/hello", context_dir=c.context),
        CONTAINERS,
    ),
    "copy-dir": (  # the copier's own points: the rest is the file's copy's
        Case.container,
        lambda c: kiln.copy_to_container(c.ctx, C, ["tree"], "/tree", context_dir=c.context),
        (KILN + "container/copier.py",),
    ),
    "config": (Case.container, _config, CONTAINERS),
    "commit": (Case.changed, lambda c: kiln.commit_container(c.ctx, C, OUT), COMMITS),
    "commit-rm": (Case.changed, lambda c: kiln.commit_container(c.ctx, C, OUT, rm=True), COMMITS),
    "rm": (Case.container, lambda c: kiln.remove_containers(c.ctx, [C]), CONTAINERS),
    "mount": (Case.container, lambda c: mount_container(c.ctx, C), CONTAINERS),
    "umount": (Case.mounted, lambda c: unmount_container(c.ctx, C), CONTAINERS),
    "rename": (Case.container, lambda c: rename_container(c.ctx, C, "renamed"), CONTAINERS),
    "run": (Case.runnable, lambda c: kiln.run_in_container(c.ctx, C, ["true"]), RUNS),
    "export": (Case.container, lambda c: kiln.export_container(c.ctx, C, c.exported), CONTAINERS),
}


# every call on overlay; on the copy driver, the commit, which reads the image's own tree
# besides the container's there (Builder.base_view) where overlay reads the upper
DRIVER_CALLS = [("overlay", name) for name in CALLS] + [("copy", "commit")]


@pytest.mark.parametrize(("case", "name"), DRIVER_CALLS, indirect=["case"])
def test_ctrl_c_at_any_point_leaves_the_containers_whole(case: Case, name) -> None:
    set_up, call, within = CALLS[name]
    assert_whole_at_every_point(
        lambda: set_up(case),
        lambda: call(case),
        case.reset,
        lambda: left_behind(case),
        lambda: _set_right(case),
        within,
        fds=True,
    )
