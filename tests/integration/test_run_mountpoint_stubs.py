"""A RUN's mountpoints (/proc, /dev, /sys, /etc/hosts, /etc/resolv.conf, /etc/hostname)
that the image lacks come from a layer under the image's: nothing is made in the upper
directory for them (each make and removal a journalled change per build step), /etc is not
copied up for /etc/hosts, and the committed layer holds only what the command wrote.
"""

from __future__ import annotations

import os
import tarfile
import tempfile

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.runtime import Mount
from snapshot_layers import layer_mismatches

pytestmark = ROOT_MARKS


def _run(b, script: str, mounts: list[Mount] | None = None) -> tuple[int, str]:
    with tempfile.TemporaryFile() as out:
        code = b.run(
            ["sh", "-c", script], mounts=mounts or [], stdout=out.fileno(), stderr=out.fileno()
        )
        out.seek(0)
        return code, out.read().decode()


def test_run_writes_no_mountpoint_into_the_upper_directory(build_env):  # noqa: F811
    from kiln.container import Builder

    b = Builder.from_image(build_env.ctx, "busybox")  # no /proc, /dev, /sys, /etc/hosts
    try:
        upper = b.upper_dir()
        # what the upper holds while the command runs (its own mountpoint aside)
        code, out = _run(b, "ls -A /upper", [Mount("bind", upper, "/upper", ("ro",))])
        assert code == 0, out
        assert out.split() == ["upper"]
        # the command still sees every mountpoint, with kiln's files on the /etc ones
        code, out = _run(
            b,
            "test -d /proc/self && test -d /dev && test -d /sys && grep -q localhost /etc/hosts"
            " && test -f /etc/resolv.conf && test -f /etc/hostname && echo ok",
        )
        assert (code, out) == (0, "ok\n")
        assert sorted(os.listdir(upper)) == []
    finally:
        b.delete()


def test_layers_hold_only_what_the_steps_wrote(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        "FROM busybox\nRUN echo one > /one\nRUN rm /etc/group && echo x > /etc/x\n"
        "RUN ls /etc > /listed && ls -d /proc /dev /sys >> /listed\n",
        tags=["stubs"],
    )
    img = build_env.image("stubs")
    names = []
    for desc in img.layers[1:]:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            names.append(sorted(m.name.lstrip("./").rstrip("/") for m in tar))
    # the mountpoints and /etc's placeholders are in no layer: the second step's /etc is
    # the image's own, with its change
    assert names[0] == ["one"]
    assert names[1] == ["etc", "etc/.wh.group", "etc/x"]
    assert names[2] == ["listed"]
    # in a RUN, /etc shows the image's files and kiln's three, nothing else
    listed = build_env.files("stubs")["listed"].decode().split()
    assert listed == ["hostname", "hosts", "passwd", "resolv.conf", "x", "/dev", "/proc", "/sys"]
    assert layer_mismatches(build_env.store, build_env.ctx.snapshots) == []
