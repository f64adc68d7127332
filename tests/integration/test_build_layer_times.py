"""What a built image shows of its files' times is what its layers hold, wherever it is used.

A layer holds whole-second mtimes (every one forced to ``--timestamp`` when given). The
store that built an image uses the step's own tree as that layer's snapshot; a store that
pulled or loaded the image unpacks the tar. Both must show the same times: to the build's
next step (a RUN that archives or compiles files records them), to a container of the
image and to ``kiln export``, or the same Dockerfile gives other digests on a machine
whose cache is warm than on one that pulled the base.
"""

from __future__ import annotations

import os

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln_cli import kiln_runner

pytestmark = ROOT_MARKS

STAMP = 1_700_000_000
MAKE = "RUN mkdir /d && echo x > /d/f && ln -s f /d/l && ln /d/f /d/h\n"


def test_the_step_after_a_timestamped_one_sees_the_timestamp(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(ctx, f"FROM busybox\n{MAKE}RUN stat -c '%n %Y' /d /d/f /d/l /d/h\n",
                    timestamp=STAMP)  # fmt: skip
    seen = build_env.output().splitlines()
    assert seen == [f"{path} {STAMP}" for path in ("/d", "/d/f", "/d/l", "/d/h")]


def test_the_step_after_one_without_timestamp_sees_whole_seconds(build_env):  # noqa: F811
    # the layer holds whole seconds; the step's tree had the clock's nanoseconds
    ctx = build_env.context_dir()
    build_env.build(ctx, f"FROM busybox\n{MAKE}RUN stat -c '%n %y' /d /d/f /d/l /d/h\n")
    seen = build_env.output().splitlines()
    assert [line.split()[0] for line in seen] == ["/d", "/d/f", "/d/l", "/d/h"]
    assert all(".000000000 " in line for line in seen), seen


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_export_of_the_built_image_is_the_export_of_it_loaded_elsewhere(
    driver,
    busybox_rootfs_tar,  # noqa: F811
    tmp_path,
):
    def runner(root: str):
        environ = dict(os.environ, KILN_ROOT=str(tmp_path / root), KILN_SNAPSHOT_DRIVER=driver)
        environ.pop("SOURCE_DATE_EPOCH", None)
        return kiln_runner(environ, timeout=300)

    kiln_here, kiln_elsewhere = runner("here"), runner("elsewhere")
    kiln_here("import", "-q", busybox_rootfs_tar, "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM busybox\n{MAKE}COPY a /d/\nRUN rm /d/h\n")
    (ctx / "a").write_text("a\n")
    kiln_here("build", "-q", "--timestamp", str(STAMP), "-t", "made", str(ctx))
    archive = str(tmp_path / "made.tar")
    kiln_here("save", "-q", "--format", "oci-archive", "-o", archive, "made")
    kiln_elsewhere("load", "-q", "-i", archive)
    exports = []
    for kiln in (kiln_here, kiln_elsewhere):
        container = kiln("from", "-q", "made").stdout.strip().splitlines()[-1]
        out = tmp_path / f"export-{len(exports)}.tar"
        kiln("export", "-o", str(out), container)
        kiln("rm", container)
        exports.append(out.read_bytes())
    assert exports[0] == exports[1]


def _context(where, order: tuple[str, ...], mtime: int, mode: int = 0o644) -> str:
    where.mkdir(parents=True)
    (where / "Containerfile").write_text(
        "FROM busybox\nCOPY . /ctx/\nRUN tar cf /ctx.tar /ctx && touch /ctx/new\n"
    )
    (where / "sub").mkdir()
    for name in order:
        (where / name).write_text(f"{name}\n")
        os.chmod(where / name, mode)
    for path in [where, *where.rglob("*")]:
        os.utime(path, (mtime + 7, mtime))
    return str(where)


def test_a_checkout_elsewhere_builds_the_same_image_and_file_modes_still_count(
    busybox_rootfs_tar,  # noqa: F811
    tmp_path,
):
    # two CI machines: other store, context path and name, file times, creation order;
    # a RUN archives what the COPY wrote (the archive holds the times it sees)
    def build(name: str, context: str) -> str:
        environ = dict(os.environ, KILN_ROOT=str(tmp_path / name))
        environ.pop("SOURCE_DATE_EPOCH", None)
        kiln = kiln_runner(environ, timeout=300)
        kiln("load", "-q", "-i", base)
        return kiln("build", "-q", "--timestamp", str(STAMP), context).stdout.strip()

    environ = dict(os.environ, KILN_ROOT=str(tmp_path / "base"))
    kiln = kiln_runner(environ, timeout=300)
    kiln("import", "-q", busybox_rootfs_tar, "busybox")
    base = str(tmp_path / "busybox.tar")
    kiln("save", "-q", "--format", "oci-archive", "-o", base, "busybox")
    one = build("one", _context(tmp_path / "a" / "app", ("x", "sub/y", "z"), 1_600_000_000))
    two = build("two", _context(tmp_path / "b" / "other", ("z", "sub/y", "x"), 1_650_000_000))
    assert one == two
    # what a file is, its mode included, is the image's: a checkout with umask 077 differs
    private = _context(tmp_path / "c" / "app", ("x", "sub/y", "z"), 1_600_000_000, 0o600)
    assert build("three", private) != one
