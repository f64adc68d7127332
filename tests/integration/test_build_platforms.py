"""Builds for other platforms (root, runc, QEMU user emulation from qemu-user-static).

A RUN in an arm64 stage runs under QEMU, the binfmt_misc handler registered (and
binfmt_misc mounted) by kiln when missing; without an emulator the step fails saying
which platform and how to enable it; native steps never touch binfmt_misc; a local image
of another platform does not satisfy ``--platform``; ``FROM --platform=$BUILDPLATFORM``
runs natively and copies into the target stage. The arm64 base comes from Debian's
``busybox-static:arm64`` (tests/foreign_images.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import MTIME, busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from foreign_images import busybox_arm64_rootfs_tar  # noqa: F401
from kiln.errors import NotFound, Unavailable
from kiln.runtime.binfmt import BINFMT_DIR, find_emulator, host_arch

pytestmark = [
    *ROOT_MARKS,
    pytest.mark.skipif(host_arch() != "amd64", reason="the foreign platform here is arm64"),
    pytest.mark.skipif(
        not os.path.exists("/usr/bin/qemu-aarch64-static"), reason="needs qemu-user-static"
    ),
]
SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def _import(store, tar: str, name: str, platform: str) -> str:
    from kiln.image import import_tarball
    from kiln.oci import Platform

    with open(tar, "rb") as f:
        rec = import_tarball(
            store, f, ['CMD ["/bin/sh"]'], "busybox rootfs",
            names=[name], platform=Platform.parse(platform), timestamp=MTIME,
        )  # fmt: skip
    return rec.id


@pytest.fixture
def arm64_env(build_env, busybox_arm64_rootfs_tar):  # noqa: F811
    _import(build_env.store, busybox_arm64_rootfs_tar, "busybox-arm64:latest", "linux/arm64")
    return build_env


def _file(env, ref: str, path: str) -> str:
    return env.files(ref)[path].decode()


def test_a_foreign_run_runs_under_qemu_with_the_platform_args(arm64_env):
    ctx = arm64_env.context_dir()
    arm64_env.build(
        ctx,
        "FROM busybox-arm64\n"
        "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH\n"
        'RUN echo "$(uname -m) $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]'
        ' $BUILDPLATFORM $BUILDARCH" > /out\n',
        platform="linux/arm64",
        tags=["foreign"],
    )
    img = arm64_env.validate("foreign")
    assert (img.config.os, img.config.architecture) == ("linux", "arm64")
    assert _file(arm64_env, "foreign", "out") == (
        "aarch64 linux/arm64 linux arm64 [] linux/amd64 amd64\n"
    )
    emulator = find_emulator("arm64")
    assert emulator is not None and emulator.enabled and "F" in emulator.flags


def test_the_handler_is_registered_when_none_is(arm64_env):
    name = os.path.join(BINFMT_DIR, "qemu-aarch64")
    if os.path.exists(name):  # another test or the machine registered it: start without
        with open(name, "w") as f:
            f.write("-1")
    assert find_emulator("arm64") is None
    ctx = arm64_env.context_dir()
    arm64_env.build(ctx, "FROM busybox-arm64\nRUN uname -m > /m\n", tags=["reg"])
    assert _file(arm64_env, "reg", "m") == "aarch64\n"
    emulator = find_emulator("arm64")
    assert emulator.enabled and "F" in emulator.flags
    assert emulator.interpreter.startswith("/usr/")  # Debian's, from binfmt.d


def test_no_emulator_names_platform_step_and_package(build_env, busybox_rootfs_tar):  # noqa: F811
    # no QEMU exists for ia64: nothing registered, nothing to register
    _import(build_env.store, busybox_rootfs_tar, "itanium:latest", "linux/ia64")
    ctx = build_env.context_dir()
    with pytest.raises(Unavailable) as err:
        build_env.build(ctx, "FROM itanium\nRUN echo never\n")
    text = str(err.value)
    assert 'building at STEP "RUN echo never" (Containerfile:2)' in text
    assert "linux/ia64" in text and "qemu-user-static" in text
    assert "never" not in build_env.output()


def test_a_local_image_of_another_platform_does_not_satisfy_platform(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(NotFound, match=r"busybox: image not known for linux/arm64 \(the local "):
        build_env.build(ctx, "FROM busybox\nRUN true\n", platform="linux/arm64", pull="never")


def test_build_platform_stage_runs_natively_and_feeds_the_target(arm64_env):
    ctx = arm64_env.context_dir()
    arm64_env.build(
        ctx,
        "FROM --platform=$BUILDPLATFORM busybox AS build\n"
        "ARG TARGETARCH\n"
        'RUN echo "built on $(uname -m) for $TARGETARCH" > /artifact\n'
        "FROM busybox-arm64\n"
        "COPY --from=build /artifact /artifact\n"
        "RUN cat /artifact > /both && uname -m >> /both\n",
        platform="linux/arm64",
        tags=["cross"],
    )
    assert _file(arm64_env, "cross", "both") == "built on x86_64 for arm64\naarch64\n"
    assert arm64_env.image("cross").config.architecture == "arm64"


def test_scratch_stage_takes_its_from_platform(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"f": "x"})
    build_env.build(ctx, "FROM --platform=linux/arm64 scratch\nCOPY f /f\n", tags=["s"])
    assert build_env.image("s").config.architecture == "arm64"


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_native_steps_never_touch_binfmt_and_foreign_ones_mount_it(arm64_env):
    """In a mount namespace of its own with binfmt_misc unmounted: a native build leaves it
    unmounted (no emulation cost), a foreign RUN mounts it and runs."""
    root = arm64_env.store.root
    arm64_env.store.close()
    ctx = arm64_env.context_dir()
    with open(os.path.join(ctx, "Containerfile"), "w") as f:
        f.write("ARG BASE\nFROM $BASE\nRUN uname -m > /m\n")
    kiln = f"{sys.executable} -m kiln.cli.main --root {root}"
    check = f"test -e {BINFMT_DIR}/status && echo mounted || echo unmounted"
    script = (
        f"umount {BINFMT_DIR} 2>/dev/null; {check}; "
        f"{kiln} build -q --build-arg BASE=busybox {ctx} >/dev/null && {check} && "
        f"{kiln} build -q --build-arg BASE=busybox-arm64 {ctx} >/dev/null && {check}"
    )
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC)}
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["unmounted", "unmounted", "mounted"]
