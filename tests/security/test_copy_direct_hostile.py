"""A COPY written straight from the context (kiln.build.copy_direct) lists the context
through directory fds, then reads each file by its path: a context changed in between must
not make it read anything else. Swapping a directory on the way for a symlink out of the
context, or a file for a FIFO, fails the step (never a hang, never the victim's bytes in a
layer); a symlink in the context stays a symlink.
"""

from __future__ import annotations

import os
import shutil

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(120)]

SECRET = b"victim secret\n"


@pytest.fixture
def hostile(build_env, tmp_path, monkeypatch):  # noqa: F811
    import kiln.build.copy_direct as copy_direct

    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_bytes(SECRET)
    ctx = build_env.context_dir(files={"files/sub/f": "mine\n", "files/g": "g\n"})
    os.symlink(str(victim / "sub" / "f"), os.path.join(ctx, "files", "out-link"))
    listed = copy_direct.plan_direct
    swaps = []

    def then_swap(*args, **kw):
        layer = listed(*args, **kw)
        assert layer is not None  # the direct path is taken
        for swap in swaps:
            swap(ctx, victim)
        return layer

    monkeypatch.setattr(copy_direct, "plan_direct", then_swap)
    return build_env, ctx, swaps


def _dir_to_symlink(ctx, victim):
    shutil.rmtree(os.path.join(ctx, "files", "sub"))
    os.symlink(str(victim / "sub"), os.path.join(ctx, "files", "sub"))


def _file_to_fifo(ctx, victim):
    os.unlink(os.path.join(ctx, "files", "g"))
    os.mkfifo(os.path.join(ctx, "files", "g"))


@pytest.mark.parametrize("swap", [_dir_to_symlink, _file_to_fifo])
def test_context_swapped_after_listing_is_refused(hostile, swap):
    env, ctx, swaps = hostile
    swaps.append(swap)
    with pytest.raises(InvalidArgument, match="changed while it was being copied"):
        env.build(ctx, "FROM busybox\nCOPY files /files\n", tags=["t:1"])
    assert not [i for i in env.store.list_images() if "localhost/t:1" in i.names]


def test_symlink_out_of_the_context_stays_a_symlink(hostile):
    env, ctx, _ = hostile
    result = env.build(ctx, "FROM busybox\nCOPY files /files\n")
    assert SECRET not in env.layer_bytes(result.image_id)
    assert env.files(result.image_id)["files/out-link"] == "other"
