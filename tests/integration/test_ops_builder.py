"""``kiln builder prune`` (kiln.ops.builder): the layer-cache index and cache mounts go; the
next build runs its steps again (root, runc, busybox)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.ops.builder import prune_build_cache

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox
RUN --mount=type=cache,target=/cache,id=pkgs echo x > /cache/x && echo one > /one
RUN echo two > /two
"""


def _hits(env) -> int:
    return len(env.messages("cache"))


def test_default_keeps_live_entries_all_removes_them_and_cache_mounts(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    first = build_env.build(ctx, DOCKERFILE, tags=["p1"])
    store = build_env.ctx.store
    entries = store.count_cache()
    assert entries >= 2 and len(store.list_cache_mounts()) == 1

    result = prune_build_cache(build_env.ctx)  # every cached image is still there
    assert (result.cache_entries, result.cache_mounts) == (0, 0)
    assert store.count_cache() == entries
    build_env.events.events.clear()
    build_env.build(ctx, DOCKERFILE, tags=["p1"])
    assert _hits(build_env) == 2

    result = prune_build_cache(build_env.ctx, all=True)
    assert (result.cache_entries, result.cache_mounts) == (entries, 1)
    assert store.count_cache() == 0 and store.list_cache_mounts() == []
    assert store.resolve_image("p1").id == first.image_id  # images stay: image prune's job
    build_env.events.events.clear()
    build_env.build(ctx, DOCKERFILE, tags=["p1"])
    assert _hits(build_env) == 0


KILN = shutil.which("kiln")


@pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed")
def test_cli_asks_unless_forced(build_env, kiln_store):  # noqa: F811
    build_env.build(build_env.context_dir(), DOCKERFILE, tags=["p2"])
    env = dict(os.environ, KILN_ROOT=kiln_store.root)
    env.pop("KILN_DEBUG", None)

    def kiln(*args, stdin=""):
        return subprocess.run([KILN, "builder", "prune", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    res = kiln("-a", stdin="n\n")
    assert res.returncode == 0 and "WARNING! This will remove all image build cache." in res.stderr
    assert kiln_store.count_cache() > 0
    res = kiln("-a", "-f")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Removed ") and "1 cache mount directories" in res.stdout
    assert kiln_store.count_cache() == 0
