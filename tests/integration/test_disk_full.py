"""A full disk under the store: a clear error, nothing half-written, the space given back, and
a store that still works (even `kiln rm -a` when the disk is already full).

The store lives on a small tmpfs the test mounts; every kiln call runs under a timeout.
"""

from __future__ import annotations

import functools
import os
import re

import pytest

from fixtures_images import make_busybox_rootfs
from kiln_cli import kiln_runner
from mount_points import tmpfs

pytestmark = [pytest.mark.root]

SIZE_MB = 30


@pytest.fixture
def small_store(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    with tmpfs(tmp_path / "small", f"{SIZE_MB}m") as mnt:
        root = str(mnt / "root")
        rootfs = make_busybox_rootfs(str(tmp_path / "rootfs.tar"))
        kiln = kiln_runner(dict(os.environ, KILN_ROOT=root), timeout=120)
        kiln("import", rootfs, "busybox")
        kiln("from", "--name", "warm", "busybox")  # the base unpacked once, as builds have it
        kiln("rm", "warm")
        yield kiln, mnt, tmp_path


def _used(mnt) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _leftovers(mnt) -> list[str]:
    root = mnt / "root"
    out = []
    for sub in ("ingest", "snapshots/tmp", "snapshots/active", "tmp"):
        d = root / sub
        if d.is_dir():
            out += [f"{sub}/{n}" for n in os.listdir(d)]
    return out


def _build(kiln, ctx, text, tag):
    ctx.mkdir(exist_ok=True)
    (ctx / "Containerfile").write_text(text)
    return kiln("build", "-t", tag, str(ctx), check=False)


def test_a_run_that_fills_the_disk_fails_as_a_run_and_gives_the_space_back(small_store):
    kiln, mnt, tmp = small_store
    before = _used(mnt)
    res = _build(kiln, tmp / "ctx", f"FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M count={SIZE_MB * 2}\n", "full")  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "exit status 1" in res.stderr and "Traceback" not in res.stderr
    assert "OperationalError" not in res.stderr
    assert _leftovers(mnt) == []
    assert _used(mnt) - before < 1 << 20  # the failed step's files are gone
    assert "localhost/full" not in kiln("images").stdout
    assert kiln("containers", "-q").stdout.strip() == ""
    ok = _build(kiln, tmp / "ctx2", "FROM busybox\nRUN echo fine > /f\n", "after")
    assert ok.returncode == 0, ok.stderr


def test_a_commit_that_cannot_fit_is_a_clear_error_and_leaves_nothing(small_store):
    kiln, mnt, tmp = small_store
    before = _used(mnt)
    # 12 MB of random bytes: the step runs, but its layer (as big again) cannot be written
    text = "FROM busybox\nRUN head -c 12000000 /dev/urandom > /r && head -c 4000000 /dev/urandom > /s\n"
    res = _build(kiln, tmp / "ctx", text, "nofit")
    assert res.returncode == 125, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: no space left on device ("), res.stderr
    assert "kiln image prune" in last and "Traceback" not in res.stderr
    assert _leftovers(mnt) == []
    assert _used(mnt) - before < 1 << 20
    assert "localhost/nofit" not in kiln("images").stdout


def test_rm_works_on_a_store_whose_disk_is_already_full(small_store):
    kiln, mnt, tmp = small_store
    name = kiln("from", "busybox").stdout.strip()
    # the working container fills the disk: its writes stay in its upper directory
    run = kiln("run", name, "--", "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=100; sync",
               check=False)  # fmt: skip
    assert "No space left" in run.stdout + run.stderr
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize < 1 << 20  # full now
    res = kiln("rm", "-a", check=False)
    assert res.returncode == 0, res.stderr
    assert kiln("containers", "-q").stdout.strip() == ""
    assert _leftovers(mnt) == []
    ok = _build(kiln, tmp / "ctx", "FROM busybox\nRUN echo fine > /f\n", "after")
    assert ok.returncode == 0, ok.stderr


def _kiln_with_busybox(tmp_path):
    """Runs quiet kiln commands on a store in ``tmp_path`` (on the disk that has room) that
    holds busybox (a layer of about 2 MB)."""
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "root"))
    env.pop("KILN_DEBUG", None)
    kiln = functools.partial(kiln_runner(env, timeout=120), "--progress", "quiet", check=False)
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs.tar"))
    assert kiln("import", rootfs, "busybox").returncode == 0
    return kiln


@pytest.mark.parametrize(
    "fmt, name",
    [("docker-archive", "a.tar"), ("oci-archive", "b.tar"), ("oci-dir", "c"), ("docker-dir", "d")],
)
def test_a_full_disk_under_the_output_names_the_output_not_the_store(tmp_path, fmt, name):
    """The store has room; the disk ``-o`` names has not: the error names the output, and an
    archive file is not left half-written."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    with tmpfs(tmp_path / "out", "256k") as out:
        kiln = _kiln_with_busybox(tmp_path)
        target = str(out / name)
        res = kiln("save", "--format", fmt, "-o", target, "busybox")
        assert (res.returncode, res.stderr) == (
            125,
            f"Error: writing {target}: no space left on device\n",
        )
        if name.endswith(".tar"):
            assert os.listdir(out) == []  # no archive, no temp file


def test_a_full_disk_under_a_local_build_output_names_the_file_not_the_store(tmp_path):
    """``kiln build --output type=local,dest=D`` on a full disk: the file of D it was writing,
    as the other outputs say it, not an unexpected error."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    with tmpfs(tmp_path / "out", "256k") as out:
        kiln = _kiln_with_busybox(tmp_path)
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Containerfile").write_text("FROM busybox\n")
        dest = out / "d"
        res = kiln("build", "--output", f"type=local,dest={dest}", str(ctx))
        assert res.returncode == 125
        assert re.fullmatch(
            f"Error: writing {re.escape(str(dest))}/[^ ]+: no space left on device\n", res.stderr
        ), res.stderr


def test_a_copy_that_cannot_fit_leaves_no_half_written_file(small_store):
    """kiln copy of a file bigger than the free space: the clear error, no partial file in
    the container, the space given back, and the container takes the next copy."""
    kiln, mnt, tmp = small_store
    kiln("from", "--name", "c", "busybox")
    before = _used(mnt)
    big = tmp / "big"
    big.write_bytes(os.urandom(SIZE_MB * 2 << 20))
    res = kiln("copy", "c", str(big), "/big", check=False)
    assert res.returncode == 125 and "no space left on device" in res.stderr, res.stderr
    assert "/big" not in kiln("diff", "c").stdout
    assert _used(mnt) - before < 1 << 20
    (tmp / "small.txt").write_text("fits\n")
    kiln("copy", "c", str(tmp / "small.txt"), "/small.txt")
    assert kiln("run", "--isolation", "chroot", "c", "cat", "/small.txt").stdout == "fits\n"
    kiln("rm", "c")
