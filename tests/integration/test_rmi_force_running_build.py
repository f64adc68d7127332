"""``rmi -f`` of the image a running build works on (its working container's) is refused as
in use, and the build's container and snapshot stay: before, the force removed the live
build's container from under it, and the build then failed with "unexpected
FileNotFoundError: .../snapshots/active/N/upper.next" at its next step's commit (found by
the stress of many kiln processes on one store, ``tests/store_stress.py``, seed 3). A user's
working container, or a killed build's, still goes with the forced removal."""

from __future__ import annotations

import subprocess

import pytest

from kiln.container import Builder
from kiln.errors import Conflict
from kiln.ops import images as image_ops
from kiln.ops.context import open_context
from kiln.util.process_owner import this_process

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def _dead_owner() -> str:
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    return f"{child.pid}:1"


def test_a_forced_rmi_leaves_a_running_builds_container(kiln_store, busybox_image):
    with open_context(kiln_store.root) as ctx:
        build = Builder.from_image(ctx, "busybox:latest", owner=this_process())
        result = image_ops.remove_images(ctx, ["busybox:latest"], force=True)
        assert [(type(e), str(e)) for e in result.errors] == [(Conflict, (
            f"image used by {build.id}: image is in use by a running build: "
            "wait for the build to end, or stop it"))]  # fmt: skip
        assert image_ops.image_exists(ctx, "busybox:latest")
        assert [c.id for c in ctx.store.list_containers()] == [build.id]
        assert build.state.snapshot_key in ctx.snapshots.list_active()
        build.delete()


@pytest.mark.parametrize("owner", ["", "dead"])
def test_a_forced_rmi_removes_a_users_or_a_killed_builds_container(
    kiln_store, busybox_image, owner
):
    with open_context(kiln_store.root) as ctx:
        Builder.from_image(ctx, "busybox:latest", owner=_dead_owner() if owner else "")
        removed = image_ops.remove_images(ctx, ["busybox:latest"], force=True)
        assert len(removed.removed_containers) == 1
        assert ctx.store.list_containers() == []
        assert not image_ops.image_exists(ctx, "busybox:latest")
