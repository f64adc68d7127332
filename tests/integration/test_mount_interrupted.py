"""A Ctrl-C that lands just after the kernel mounted (the syscall done, Python not yet back
in the caller) leaves nothing mounted: not by ``mount``, ``mounted`` or the overlay probe a
fresh store runs in its first build (a library build interrupted at its first COPY left the
probe's overlay mounted)."""

from __future__ import annotations

import os

import pytest

from kiln.snapshot import mount
from kiln.snapshot.spec import MountSpec

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture
def interrupt_after_the_kernel_mounted(monkeypatch):
    real = mount._overlay
    calls = []

    def overlay_then_ctrl_c(spec, target):
        real(spec, target)
        calls.append(target)
        assert mount.is_mountpoint(target)  # the kernel did mount
        raise KeyboardInterrupt

    monkeypatch.setattr(mount, "_overlay", overlay_then_ctrl_c)
    return calls


def _overlay_spec(base) -> MountSpec:
    dirs = [base / d for d in ("lower", "upper", "work")]
    for d in dirs:
        d.mkdir()
    return MountSpec("overlay", "overlay", mount.supported_overlay_options(),
                     (str(dirs[0]),), str(dirs[1]), str(dirs[2]))  # fmt: skip


def test_mount_interrupted_after_the_kernel_mounted_leaves_nothing_mounted(
    tmp_path, interrupt_after_the_kernel_mounted
) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(KeyboardInterrupt):
        mount.mount(_overlay_spec(tmp_path), str(target))
    assert interrupt_after_the_kernel_mounted == [str(target)]
    assert mount.mounts_under(str(tmp_path)) == []


def test_mounted_interrupted_leaves_no_mount_and_no_directory(
    tmp_path, interrupt_after_the_kernel_mounted
) -> None:
    parent = tmp_path / "scratch"
    parent.mkdir()
    with pytest.raises(KeyboardInterrupt), mount.mounted(_overlay_spec(tmp_path), str(parent)):
        pytest.fail("the body ran though the mount was interrupted")
    assert len(interrupt_after_the_kernel_mounted) == 1
    assert mount.mounts_under(str(tmp_path)) == []
    assert os.listdir(parent) == []


def test_the_overlay_probe_interrupted_leaves_no_mount_and_no_probe(
    tmp_path, interrupt_after_the_kernel_mounted
) -> None:
    with pytest.raises(KeyboardInterrupt):
        mount.overlay_works(str(tmp_path))
    assert len(interrupt_after_the_kernel_mounted) == 1
    assert mount.mounts_under(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []
