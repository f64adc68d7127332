"""``kiln system df`` and ``kiln system prune``: what builds leave on disk is shown, and one
command frees all of it that nothing uses (root, runc, busybox)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

KILN = shutil.which("kiln")

DOCKERFILE = """\
FROM busybox
RUN --mount=type=cache,target=/cache,id=pkgs head -c 40000 /dev/zero > /cache/x && echo one > /one
"""


def _kiln(root: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KILN_ROOT=root)
    env.pop("KILN_DEBUG", None)
    assert KILN is not None
    return subprocess.run([KILN, *args], env=env, capture_output=True, text=True, timeout=120)


def test_system_prune_all_frees_what_builds_left_and_df_shows_it(build_env, kiln_store):  # noqa: F811
    build_env.build(build_env.context_dir(), DOCKERFILE, tags=["sp"])
    root = kiln_store.root
    res = _kiln(root, "system", "df", "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = {r["Type"]: r for r in json.loads(res.stdout)}
    assert rows["Build Cache"]["Total"] >= 1 and rows["Build Cache"]["Size"] >= 40000
    assert rows["Images"]["Total"] >= 1
    stubs = os.path.join(root, "snapshots", "stubs")
    (stub,) = os.listdir(stubs)  # the RUN's empty mountpoints
    os.utime(os.path.join(stubs, stub), (0, 0))  # made before the grace period
    res = _kiln(root, "system", "prune", "-a", "-f")
    assert res.returncode == 0, res.stderr
    assert "Total reclaimed space" in res.stderr
    assert os.listdir(stubs) == []
    assert os.listdir(os.path.join(root, "cache-mounts")) == []
    res = _kiln(root, "system", "df", "--format", "json")
    rows = {r["Type"]: r for r in json.loads(res.stdout)}
    assert rows["Images"]["Total"] == 0 and rows["Build Cache"]["Total"] == 0
