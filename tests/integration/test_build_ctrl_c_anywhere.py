"""A Ctrl-C at any point of a build leaves the store whole.

A small build on a busybox base (``COPY`` of a file, a ``RUN`` in runc writing one,
``ENV``) is run once per point of kiln's code where a real Ctrl-C can land, with a real
SIGINT sent there (``ctrl_c_anywhere``): as a first build (each trial from the base image
alone), as a fully cached rebuild, and as a two-stage build with ``COPY --from``, its
stages one at a time and side by side (in other threads: a Ctrl-C lands in the main one,
which stops them and waits). After each trial, whether the build finished or raised
``KeyboardInterrupt``: ``kiln system check`` finds nothing, no lease, ingest or staged file
is left, the snapshotter's rows and directories agree, no working container, active
snapshot, mount under the store or runc container is left, and the build's tag names
either nothing or the whole image the build makes. Then the build works again (the next
trial).

The one-stage build passes about 11,000 points of kiln's code (cached 5,000): the trials
are at the points of the code that makes, runs and removes what a build holds (its steps,
working containers, RUN containers, commits, lease; about 1,150, cached 400, two stages
1,300, side by side 130 in the main thread), at every few of them (``BUILDS``: about 70 s
in all); ``KILN_CTRL_C_ALL=1`` tries each of them (about 10 minutes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator

import pytest

import kiln
from ctrl_c_anywhere import KILN, assert_whole_at_every_point
from fixtures_images import make_busybox_rootfs
from kiln.image import open_store_image, validate_image
from kiln.snapshot.mount import overlay_works, unmount_all_under
from kiln.store.paths import DB_NAME
from store_leftovers import set_store_right, store_left_behind, trial_context

ALL = os.environ.get("KILN_CTRL_C_ALL") == "1"
pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(3600 if ALL else 300),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

BASE = "localhost/busybox:1"
OUT = "localhost/out:1"
ONE_STAGE = f"FROM {BASE}\nCOPY hello /hello\nRUN echo ran > /ran\nENV A=1\n"
TWO_STAGES = (
    f"FROM {BASE} AS one\nRUN echo one > /one\n"
    f"FROM {BASE}\nCOPY --from=one /one /one\nCOPY hello /hello\nENV A=1\n"
)
MADE = {ONE_STAGE: {"hello": b"hello\n", "ran": b"ran\n"},
        TWO_STAGES: {"hello": b"hello\n", "one": b"one\n"}}  # fmt: skip
# where the trials are: the build's steps, its working containers, RUN containers and
# commits, and the use case that holds its lease
BUILD = tuple(
    KILN + p
    for p in (
        "ops/build.py",
        "build/executor.py",
        "build/stage_run.py",
        "build/dispatch_run.py",
        "build/dispatch_copy.py",
        "container/",
        "runtime/runc.py",
        "runtime/bundle.py",
    )
)


class Case:
    """A store with the busybox image, and a build context of a file and a Containerfile."""

    def __init__(self, ctx: kiln.Context, tmp: str, text: str, jobs: int | None):
        self.ctx = ctx
        self.text = text
        self.jobs = jobs
        self.store = ctx.store
        self.snaps = ctx.snapshots
        self.runc_root = os.path.join(os.environ["KILN_RUNTIME_DIR"], "runc")
        kiln.import_image(ctx, make_busybox_rootfs(os.path.join(tmp, "rootfs.tar")), BASE)
        self.context = os.path.join(tmp, "context")
        os.mkdir(self.context)
        for name, data in (("hello", "hello\n"), ("Containerfile", text)):
            with open(os.path.join(self.context, name), "w") as f:
                f.write(data)

    def build(self) -> None:
        kiln.build(self.ctx, kiln.BuildOptions(context=self.context, tags=[OUT], jobs=self.jobs))

    def reset(self) -> None:
        """Back to the base image alone, through kiln's own calls."""
        for rec in self.store.list_images():
            if BASE not in rec.names:
                self.store.delete_image(rec.id)
        self.store.gc()
        self.snaps.settle()

    def built(self) -> None:
        """Every step's image there, the tag not: for a rebuild all from the cache."""
        self.build()
        self.store.untag(OUT)

    def runc_containers(self) -> list[str]:
        if not os.path.isdir(self.runc_root):
            return []
        out = subprocess.run(["runc", "--root", self.runc_root, "list", "--format", "json"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return [c["id"] for c in json.loads(out or "null") or []]


@pytest.fixture
def case(request, tmp_path, monkeypatch) -> Iterator[Case]:
    if not overlay_works(str(tmp_path)):
        pytest.skip("overlayfs cannot be mounted here")
    with trial_context(str(tmp_path), monkeypatch) as ctx:
        yield Case(ctx, str(tmp_path), *request.param)


def _tagged(c: Case) -> list[str]:
    """The tag names nothing, or the whole image the build makes."""
    try:
        img = open_store_image(c.store, OUT)
    except kiln.KilnError:
        return []
    try:
        validate_image(c.store, img.manifest_digest)
    except kiln.KilnError as exc:
        return [f"{OUT} names a broken image: {exc}"]
    if "A=1" not in (img.config.config.env or ()):
        return [f"{OUT} names an image without the build's ENV"]
    return []


def _files(c: Case) -> dict[str, bytes]:
    """The files of the tagged image's layers above the base's, by path."""
    img = open_store_image(c.store, OUT)
    found = {}
    for desc in img.layers[len(open_store_image(c.store, BASE).layers) :]:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for m in tar:
                if m.isfile():
                    found[m.name.lstrip("./")] = tar.extractfile(m).read()
    return found


def left_behind(c: Case) -> list[str]:
    """What is not whole in the store, its snapshotter and the build's runs."""
    problems = store_left_behind(c.ctx)
    problems += [f"container {rec.name} left" for rec in c.store.list_containers()]
    problems += [f"active snapshot {key} left" for key in c.snaps.list_active()]
    problems += [f"runc container {i} left" for i in c.runc_containers()]
    return problems + _tagged(c)


def _set_right(c: Case) -> None:
    """Remove what a failed trial left, so the next trial shows its own."""
    for run_id in c.runc_containers():
        subprocess.run(["runc", "--root", c.runc_root, "delete", "--force", run_id],
                       capture_output=True, check=False)  # fmt: skip
    unmount_all_under(c.store.root)
    for rec in c.store.list_containers():
        c.store.delete_container(rec.id)
    for key in c.snaps.list_active():
        c.snaps.remove(key)
    set_store_right(c.ctx)
    if _tagged(c):
        c.store.untag(OUT)


DATABASES = {DB_NAME, "snapshots.db"}


def _is_database(c: Case, path: str) -> bool:
    """Whether ``path`` is one of the store's or its snapshotter's database files."""
    name = os.path.basename(path)
    return path.startswith(c.store.root + os.sep) and name.split("-")[0] in DATABASES


Setter = Callable[[Case], object]
# name -> (Containerfile, its stages built one at a time (1) or side by side (None: as
# many as the build's default), set-up, reset, every how many points a trial is made)
BUILDS: dict[str, tuple[str, int | None, Setter, Setter, int]] = {
    "first": (ONE_STAGE, 1, lambda c: None, Case.reset, 6),
    "cached": (ONE_STAGE, 1, Case.built, lambda c: None, 3),
    "two-stages": (TWO_STAGES, 1, lambda c: None, Case.reset, 12),
    "two-stages-side-by-side": (TWO_STAGES, None, lambda c: None, Case.reset, 4),
}


@pytest.mark.parametrize(
    ("case", "name"),
    [pytest.param((text, jobs), name, id=name) for name, (text, jobs, *_) in BUILDS.items()],
    indirect=["case"],
)
def test_ctrl_c_at_any_point_of_a_build_leaves_the_store_whole(case: Case, name) -> None:
    _, _, set_up, reset, every = BUILDS[name]
    assert_whole_at_every_point(
        lambda: set_up(case),
        case.build,
        lambda: reset(case),
        lambda: left_behind(case),
        lambda: _set_right(case),
        BUILD,
        every=1 if ALL else every,
        fds=True,
        # side by side, each stage's thread has database connections of its own, which
        # stay open after it ends until another thread opens one or the store closes
        # (util.sqlite): bounded, not the trial's leak
        fds_ignored=lambda path: _is_database(case, path),
    )
    assert _files(case) == MADE[case.text]  # the last build, not interrupted, made it
